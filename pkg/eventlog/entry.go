package eventlog

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Entry is the part of one event that people read: what `supervisor tail`
// and `supervisor inspect` show.
type Entry struct {
	Timestamp string `json:"timestamp"`
	Level     string `json:"level"`
	Event     string `json:"event"`
	Message   string `json:"message"`
	Error     string `json:"error,omitempty"` // the envelope's error, as text
	Fields    Fields `json:"fields,omitempty"`
}

// Field is one member of an event's data, as text.
type Field struct {
	Key   string
	Value string
}

// Fields are the KeyFields an event has, in KeyFields order. In JSON they
// are one object of strings, {"status":"failed","exit_code":"1"}.
type Fields []Field

// MarshalJSON writes the fields as one object, in order.
func (fs Fields) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, f := range fs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, []byte(f.Key))
		b = append(b, ':')
		b = appendString(b, []byte(f.Value))
	}
	return append(b, '}'), nil
}

// KeyFields are the data members an Entry keeps, in this order: the ones that
// say how a job or step ended and where a console line came from.
var KeyFields = []string{"status", "exit_code", "error", "stream", "step", "attempt", "retry_in_s"}

// ParseEntry reads the envelope and the KeyFields of one events-file line.
// ok is false when the line is not a JSON object with a string "event".
func ParseEntry(line []byte) (e Entry, ok bool) {
	ms, ok := splitObject(nil, line)
	if !ok {
		return Entry{}, false
	}
	var data []byte
	for _, m := range ms {
		switch string(m.key) {
		case `"timestamp"`:
			e.Timestamp = text(m.val)
		case `"level"`:
			e.Level = text(m.val)
		case `"event"`:
			if len(m.val) == 0 || m.val[0] != '"' {
				return Entry{}, false
			}
			e.Event = string(unquote(m.val))
		case `"message"`:
			e.Message = text(m.val)
		case `"error"`:
			e.Error = text(m.val)
		case `"data"`:
			data = m.val
		}
	}
	if e.Event == "" {
		return Entry{}, false
	}
	e.Fields = keyFields(data)
	return e, true
}

// keyFields picks the KeyFields out of data, when it is an object.
func keyFields(data []byte) Fields {
	if len(data) == 0 || data[0] != '{' {
		return nil
	}
	ms, ok := splitObject(nil, data)
	if !ok {
		return nil
	}
	var out Fields
	for _, k := range KeyFields {
		quoted := `"` + k + `"`
		for _, m := range ms {
			if string(m.key) == quoted {
				if v := text(m.val); v != "" {
					out = append(out, Field{Key: k, Value: v})
				}
				break
			}
		}
	}
	return out
}

// text renders a JSON value for people: strings without quotes, null as "",
// objects with a "message" member as that message, anything else compact.
func text(v []byte) string {
	v = bytes.TrimSpace(v)
	switch {
	case len(v) == 0 || string(v) == "null":
		return ""
	case v[0] == '"':
		return string(unquote(v))
	case v[0] == '{':
		var m struct {
			Message *string `json:"message"`
		}
		if json.Unmarshal(v, &m) == nil && m.Message != nil {
			return *m.Message
		}
	}
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return strings.TrimSpace(string(v))
	}
	return b.String()
}
