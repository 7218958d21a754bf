package eventlog

import (
	"bytes"
	"encoding/json"
)

// maxDepth bounds nesting like encoding/json does.
const maxDepth = 10000

// member is one member of a JSON object, as written.
type member struct {
	key []byte // quotes included
	val []byte
	env int // index in envelopeKeys, or -1
}

// splitObject reports whether b is exactly one JSON object (surrounding
// whitespace allowed), appending its members to ms. It accepts what
// json.Valid accepts; like it, it does not check UTF-8.
//
// It exists because engine events are the bulk of a run's output: one pass
// that validates and finds the members is several times faster than
// decoding into map[string]json.RawMessage.
func splitObject(ms []member, b []byte) ([]member, bool) {
	s := scanner{b: b}
	s.ws()
	if s.i >= len(b) || b[s.i] != '{' || !s.object(&ms) {
		return ms, false
	}
	s.ws()
	return ms, s.i == len(b)
}

type scanner struct {
	b     []byte
	i     int
	depth int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		return s.str()
	case c == '{':
		return s.object(nil)
	case c == '[':
		return s.array()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return false
}

// object scans an object at s.i; its members are appended to ms if not nil.
func (s *scanner) object(ms *[]member) bool {
	if empty, ok := s.open('}'); empty || !ok {
		return ok
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		k := s.i
		if !s.str() {
			return false
		}
		key := s.b[k:s.i]
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		v := s.i
		if !s.value() {
			return false
		}
		if ms != nil {
			*ms = append(*ms, member{key: key, val: s.b[v:s.i], env: -1})
		}
		if end, ok := s.next('}'); end || !ok {
			return ok
		}
	}
}

func (s *scanner) array() bool {
	if empty, ok := s.open(']'); empty || !ok {
		return ok
	}
	for {
		if !s.value() {
			return false
		}
		if end, ok := s.next(']'); end || !ok {
			return ok
		}
	}
}

// open steps into the object or array at s.i, whose closing byte is end.
// empty: it closed at once; !ok: it nests too deep.
func (s *scanner) open(end byte) (empty, ok bool) {
	if s.depth++; s.depth > maxDepth {
		return false, false
	}
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == end {
		s.i++
		s.depth--
		return true, true
	}
	return false, true
}

// next reads what follows a member or element: a comma before the next one,
// or end, which closes the container (closed). !ok: anything else.
func (s *scanner) next(end byte) (closed, ok bool) {
	s.ws()
	if s.i >= len(s.b) {
		return false, false
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		s.ws()
		return false, true
	case end:
		s.i++
		s.depth--
		return true, true
	}
	return false, false
}

// plain marks the bytes that stand for themselves inside a JSON string.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (s *scanner) str() bool {
	b := s.b
	i := s.i + 1 // opening quote
	for i < len(b) {
		if plain[b[i]] {
			i++
			continue
		}
		switch b[i] {
		case '"':
			s.i = i + 1
			return true
		case '\\':
			if i+1 >= len(b) {
				return false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return false
				}
				i += 6
			default:
				return false
			}
		default: // a control character
			return false
		}
	}
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (s *scanner) number() bool {
	b, i := s.b, s.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	s.i = i
	return true
}

func (s *scanner) literal(lit string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return false
	}
	s.i += len(lit)
	return true
}

// unquote returns the text of the valid JSON string q.
func unquote(q []byte) []byte {
	if bytes.IndexByte(q, '\\') < 0 {
		return q[1 : len(q)-1]
	}
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return nil
	}
	return []byte(s)
}
