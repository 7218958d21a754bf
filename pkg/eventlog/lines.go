package eventlog

import (
	"bufio"
	"bytes"
	"io"
)

// lineReader reads lines of at most limit bytes; the rest of a longer line is
// read and dropped, so memory stays bounded whatever the input holds. Pipe
// reads engine output with it and LineReader reads events files.
type lineReader struct {
	br    *bufio.Reader
	limit int
	acc   []byte // the line being assembled when it spans reads; at most limit bytes
	// A line whose end has not been read yet (the input ended before its
	// newline) is kept in acc, dropped and last, and partial is set: the next
	// call goes on with the same line.
	dropped  int64
	last     byte // last byte of the line so far, kept or dropped
	partial  bool
	consumed int64 // bytes read from br, through the end of the last whole line or partial tail
}

// next returns the next line without its "\n" or "\r\n", at most limit bytes
// of it, and how many bytes of it were dropped beyond that. The line is valid
// until the next call. When the input ends before a newline, err is the read
// error (io.EOF at the end) and line is what was read of the last line,
// which the reader keeps: a later call continues it once more input arrives.
func (l *lineReader) next() (line []byte, dropped int64, err error) {
	if !l.partial {
		l.acc, l.dropped, l.last = l.acc[:0], 0, 0
	}
	l.partial = false
	for {
		chunk, rerr := l.br.ReadSlice('\n')
		l.consumed += int64(len(chunk))
		complete := rerr == nil
		if complete {
			chunk = chunk[:len(chunk)-1]
			if len(l.acc) == 0 && l.dropped == 0 {
				// The whole line is in the read buffer: no copy.
				if trimmed := bytes.TrimSuffix(chunk, []byte{'\r'}); len(trimmed) <= l.limit {
					return trimmed, 0, nil
				}
			}
		}
		if len(chunk) > 0 {
			l.last = chunk[len(chunk)-1]
		}
		if room := l.limit - len(l.acc); len(chunk) > room {
			l.dropped += int64(len(chunk) - room)
			chunk = chunk[:room]
		}
		l.acc = appendCapped(l.acc, chunk, l.limit)
		if rerr == bufio.ErrBufferFull {
			continue
		}
		l.partial = !complete
		line, dropped = l.acc, l.dropped
		if l.last == '\r' { // a "\r\n" split across reads, or a tail ending in "\r"
			if dropped > 0 {
				dropped--
			} else {
				line = line[:len(line)-1]
			}
		}
		return line, dropped, rerr
	}
}

// LineReader reads the lines of an events file that another process may
// still be appending to. Lines longer than the limit are cut (Next says how
// many bytes were dropped), so memory stays bounded. A last line without its
// newline (a writer mid-line) is never returned as a line: Next reports
// io.EOF and returns the line whole once its newline has been written.
type LineReader struct {
	lines lineReader
	start int64 // offset where the line Next returns next begins
}

// NewLineReader reads lines of at most maxLine bytes from r (0 means
// DefaultMaxLineBytes).
func NewLineReader(r io.Reader, maxLine int) *LineReader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	return &LineReader{lines: lineReader{br: bufio.NewReaderSize(r, readBufferBytes), limit: maxLine}}
}

// Next returns the next whole line without its newline, at most maxLine bytes
// of it, how many bytes of it were dropped beyond that, and the offset in the
// input where the line begins. The line is valid until the next call. At the
// end of the input err is io.EOF; call Next again after the file has grown.
func (r *LineReader) Next() (line []byte, dropped int64, offset int64, err error) {
	line, dropped, err = r.lines.next()
	if err != nil {
		return nil, 0, 0, err
	}
	offset, r.start = r.start, r.lines.consumed
	return line, dropped, offset, nil
}

// Offset is where the next line begins: the input's length up to its last
// newline read so far.
func (r *LineReader) Offset() int64 { return r.start }
