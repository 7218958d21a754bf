package eventlog

import (
	"bufio"
	"bytes"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"unicode/utf8"
)

// readBufferBytes is the size of the read buffer of one Pipe.
const readBufferBytes = 64 << 10

// envelopeKeys are written first, in this order; other top-level members of
// an engine event follow in their own order.
var envelopeKeys = [...]string{"event_id", "engine_run_id", "timestamp", "level", "event", "message", "data", "error"}

// Pipe copies one engine output stream (stdout or stderr) into the log until
// r reports io.EOF, line by line:
//
//   - A line that is a JSON object with a string "event" member is an engine
//     event. It is written with the job's Context added to its data, and
//     with missing envelope members filled in: event_id, timestamp, level
//     "info", engine_run_id, message "". Every other member the engine set,
//     known or not, is kept as it was ("error" included), except that an
//     envelope member that is null or not a string counts as missing, so
//     every line keeps the envelope's types. A missing or null data becomes
//     {}; data that is not an object is kept as {"value": <data>}.
//     onEvent, when not nil, is then called with the event's name and its
//     data as written (Context included); data is the caller's to keep.
//   - Every other line that is not blank becomes a console.line event whose
//     message is the line (without its "\r\n" or "\n") and whose data has
//     "scope" and "stream"; its level is "error" when stream is "stderr",
//     else "info". Blank lines are skipped.
//   - A line longer than DefaultMaxLineBytes is cut on a UTF-8 boundary to
//     at most that many bytes, written as a console.line with " …[truncated N
//     bytes]" appended to its message and data.truncated true; the rest of
//     the line is read and dropped. So memory stays bounded whatever r holds.
//
// Invalid UTF-8 is replaced by U+FFFD, so every line written is valid JSON.
// Pipe keeps reading when a write fails (a stalled pipe would hang the
// engine) and returns the first write error at the end, or the read error.
func (l *Log) Pipe(r io.Reader, scope, stream string, onEvent func(name string, data json.RawMessage)) error {
	p := l.newPipe(r, scope, stream)
	defer func() {
		p.lines.br.Reset(nil)
		readers.Put(p.lines.br)
	}()
	var werr error
	for {
		line, dropped, rerr := p.lines.next()
		if dropped > 0 || !blank(line) {
			out, isEvent, name, data := p.render(line, dropped)
			if err := l.writeLine(out, p.lines.br.Buffered() == 0); err != nil && werr == nil {
				werr = err
			}
			if isEvent && onEvent != nil {
				onEvent(string(name), bytes.Clone(data))
			}
		}
		if rerr != nil {
			if ferr := l.Flush(); ferr != nil && werr == nil && !errors.Is(ferr, ErrClosed) {
				werr = ferr
			}
			if rerr == io.EOF {
				return werr
			}
			return errors.Join(fmt.Errorf("eventlog: read engine %s: %w", stream, rerr), werr)
		}
	}
}

// pipe is the state of one Pipe call.
type pipe struct {
	log     *Log
	lines   lineReader
	rnd     *rand.ChaCha8
	out     []byte // the encoded line(s)
	data    []byte // the encoded data of an engine event
	clean   []byte // scratch for compacted input
	members []member
	clock   clock
	console []byte // `,"level":...,"event":"console.line","message":`
	tail    []byte // data members of a console.line after the Context
}

func (l *Log) newPipe(r io.Reader, scope, stream string) *pipe {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	level := "info"
	if stream == "stderr" {
		level = "error"
	}
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	p := &pipe{log: l, lines: lineReader{br: br, limit: l.maxLine},
		rnd: rand.NewChaCha8(seed)}
	p.console = append(p.console, `,"level":`...)
	p.console = appendString(p.console, []byte(level))
	p.console = append(p.console, `,"event":"console.line","message":`...)
	p.tail = append(p.tail, `"scope":`...)
	p.tail = appendString(p.tail, []byte(scope))
	p.tail = append(p.tail, `,"stream":`...)
	p.tail = appendString(p.tail, []byte(stream))
	return p
}

// appendCapped appends src to dst, growing dst to at most limit bytes of
// capacity. len(dst)+len(src) must not exceed limit.
func appendCapped(dst, src []byte, limit int) []byte {
	if need := len(dst) + len(src); need > cap(dst) {
		n := min(max(2*cap(dst), need, 512), limit)
		grown := make([]byte, len(dst), n)
		copy(grown, dst)
		dst = grown
	}
	return append(dst, src...)
}

func blank(line []byte) bool {
	for _, c := range line {
		if c != ' ' && c != '\t' && c != '\r' && c != '\v' && c != '\f' {
			return false
		}
	}
	return true
}

// render encodes one line. For an engine event it also returns its name and
// encoded data; all are valid until the next call.
func (p *pipe) render(line []byte, dropped int64) (out []byte, isEvent bool, name, data []byte) {
	if dropped == 0 {
		if name, ok := p.renderEvent(line); ok {
			return p.out, true, name, p.data
		}
	}
	p.renderConsole(line, dropped)
	return p.out, false, nil, nil
}

func (p *pipe) renderConsole(line []byte, dropped int64) {
	l := p.log
	b := appendHead(p.out[:0], randomID(p.rnd), l.engineRunID, &p.clock)
	b = append(b, p.console...)
	b = append(b, '"')
	if dropped > 0 {
		n := cutUTF8(line)
		dropped += int64(len(line) - n)
		b = appendStringBody(b, line[:n])
		b = append(b, " …[truncated "...)
		b = strconv.AppendInt(b, dropped, 10)
		b = append(b, " bytes]"...)
	} else {
		b = appendStringBody(b, line)
	}
	b = append(b, `","data":{`...)
	for _, c := range l.ctx {
		b = append(b, c.member...)
		b = append(b, ',')
	}
	b = append(b, p.tail...)
	if dropped > 0 {
		b = append(b, `,"truncated":true`...)
	}
	p.out = append(b, '}', '}', '\n')
}

// renderEvent encodes line into p.out as an enriched engine event, or reports
// false when line is not a JSON object with a string "event" member.
func (p *pipe) renderEvent(line []byte) (name []byte, ok bool) {
	line = bytes.TrimLeft(line, " \t")
	if len(line) == 0 || line[0] != '{' {
		return nil, false
	}
	if !utf8.Valid(line) {
		line = bytes.ToValidUTF8(line, []byte("\uFFFD"))
	}
	if bytes.IndexByte(line, '\r') >= 0 {
		// A bare "\r" between tokens is valid JSON but ends the line for
		// readers that take "\r" as a line end.
		buf := bytes.NewBuffer(p.clean[:0])
		if err := json.Compact(buf, line); err != nil {
			return nil, false
		}
		p.clean = buf.Bytes()
		line = p.clean
	}
	ms, ok := splitObject(p.members[:0], line)
	p.members = ms
	if !ok {
		return nil, false
	}
	var env [len(envelopeKeys)][]byte // the last value of each envelope member
	for i := range ms {
		ms[i].env = envelopeIndex(ms[i].key)
		if ms[i].env >= 0 {
			env[ms[i].env] = ms[i].val
		}
	}
	ev := env[keyEvent]
	if len(ev) == 0 || ev[0] != '"' {
		return nil, false
	}
	p.data = p.log.appendData(p.data[:0], env[keyData])
	env[keyData] = p.data
	p.out = p.log.appendEvent(p.out[:0], randomID(p.rnd), &p.clock, &env, ms)
	return unquote(ev), true
}

// Indexes in envelopeKeys.
const (
	keyEventID = iota
	keyEngineRunID
	keyTimestamp
	keyLevel
	keyEvent
	keyMessage
	keyData
	keyError
)

// envelopeIndex returns the index of key (quoted) in envelopeKeys, or -1.
func envelopeIndex(key []byte) int {
	k := unquote(key)
	for i, e := range envelopeKeys {
		if string(k) == e {
			return i
		}
	}
	return -1
}

// appendData appends the engine event's data with the Context's missing keys
// added. Missing or null data is {}; data that is not an object is kept as
// {"value": data}.
func (l *Log) appendData(b []byte, raw []byte) []byte {
	switch {
	case isNull(raw):
		raw = []byte("{}")
	case raw[0] != '{':
		raw = slices.Concat([]byte(`{"value":`), raw, []byte("}"))
	}
	present := l.presentKeys(raw)
	b = append(b, raw[:len(raw)-1]...) // without the closing brace
	empty := len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0
	for i, c := range l.ctx {
		if present&(1<<i) != 0 {
			continue
		}
		if !empty {
			b = append(b, ',')
		}
		b = append(b, c.member...)
		empty = false
	}
	return append(b, '}')
}

func isNull(raw []byte) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// presentKeys reports, one bit per Context key, which of them the valid JSON
// object obj already has.
func (l *Log) presentKeys(obj []byte) uint {
	// Without a backslash every key is spelled literally, so a key whose
	// quoted name does not occur is certainly absent. All Context keys end
	// in `Id"`, which most data never holds: one search usually settles it.
	mayHave := bytes.IndexByte(obj, '\\') >= 0
	if !mayHave && bytes.Contains(obj, []byte(`Id"`)) {
		for _, c := range l.ctx {
			mayHave = mayHave || bytes.Contains(obj, c.quoted)
		}
	}
	if !mayHave {
		return 0
	}
	ms, _ := splitObject(nil, obj)
	var present uint
	for _, m := range ms {
		k := unquote(m.key)
		for i, c := range l.ctx {
			if string(k) == c.name {
				present |= 1 << i
			}
		}
	}
	return present
}

// appendEvent appends an engine event: the envelope members env in a fixed
// order, those missing, null or not strings filled in (data and error are
// taken as they are), then the object's other members ms as they were.
func (l *Log) appendEvent(b []byte, id [16]byte, clock *clock, env *[len(envelopeKeys)][]byte, ms []member) []byte {
	b = append(b, '{')
	for i, k := range envelopeKeys {
		v := env[i]
		switch {
		case i == keyData:
		case i == keyError:
			if v == nil {
				continue
			}
		case len(v) == 0 || v[0] != '"':
			v = nil // missing, null or not a string: the envelope keeps its types
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		if v == nil {
			b = l.appendDefault(b, i, id, clock)
		} else {
			b = append(b, v...)
		}
	}
	for _, m := range ms {
		if m.env < 0 {
			b = append(b, ',')
			b = append(b, m.key...)
			b = append(b, ':')
			b = append(b, m.val...)
		}
	}
	return append(b, '}', '\n')
}

// appendDefault appends the value of a missing envelope member.
func (l *Log) appendDefault(b []byte, key int, id [16]byte, clock *clock) []byte {
	switch key {
	case keyEventID:
		b = append(b, '"')
		b = appendUUID(b, id)
		return append(b, '"')
	case keyEngineRunID:
		return append(b, l.engineRunID...)
	case keyTimestamp:
		b = append(b, '"')
		b = clock.appendNow(b)
		return append(b, '"')
	case keyLevel:
		return append(b, `"info"`...)
	default: // message
		return append(b, `""`...)
	}
}
