package jobspec

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// ErrLineTooLong is ReadLine's error for a line over its limit.
var ErrLineTooLong = errors.New("line too long")

// ReadLine reads one line of at most limit bytes, without its newline: the
// framing of a serving jobrunner's specs and results. A longer line is
// consumed to its end and reported as ErrLineTooLong; a last line without
// a newline comes with io.EOF.
func ReadLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong && len(line)+len(chunk) <= limit+1 {
			line = append(line, chunk...)
		} else {
			tooLong, line = true, nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLong && (err == nil || errors.Is(err, io.EOF)) {
			return nil, ErrLineTooLong
		}
		return bytes.TrimSuffix(line, []byte("\n")), err
	}
}
