package summary

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The readers below take a value decoded with json.Decoder.UseNumber and
// return nil (or false) for anything of the wrong type.

func object(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// get follows keys through nested objects; nil when one is missing.
func get(v any, keys ...string) any {
	for _, k := range keys {
		v = object(v)[k]
	}
	return v
}

func ptr[T any](v T) *T { return &v }

// integer reads a whole number that fits a 32-bit INTEGER column: a JSON
// number (1 and 1.0, not 1.5) or a string holding one. Booleans are refused.
func integer(v any) *int64 {
	f, ok := number(v)
	if !ok || f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return nil
	}
	return ptr(int64(f))
}

func integerOr0(v any) int64 {
	if i := integer(v); i != nil {
		return *i
	}
	return 0
}

// float reads a finite JSON number or a string holding one.
func float(v any) *float64 {
	if f, ok := number(v); ok {
		return &f
	}
	return nil
}

// number reads a finite decimal number from a json.Number, float64 or string.
func number(v any) (float64, bool) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = strings.TrimSpace(x)
		if !decimal(s) {
			return 0, false
		}
	case float64:
		return x, !math.IsNaN(x) && !math.IsInf(x, 0)
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// decimal reports whether s uses only the characters of a decimal number,
// which keeps out "NaN", "Inf", hexadecimal and underscores.
func decimal(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E') {
			return false
		}
	}
	return true
}

// boolean reads true and false, the numbers 1 and 0, and the strings true,
// false, 1, 0, yes and no in any case.
func boolean(v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case json.Number, float64:
		if f, ok := number(x); ok && (f == 0 || f == 1) {
			return f == 1, true
		}
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "1", "yes":
			return true, true
		case "false", "0", "no":
			return false, true
		}
	}
	return false, false
}

// str reads a string, trimmed and without NUL bytes (which PostgreSQL text
// refuses), cut to width characters (0: no limit); nil when empty.
func str(v any, width int) *string {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	s = strings.TrimSpace(strings.ReplaceAll(s, "\x00", ""))
	if width > 0 && utf8.RuneCountInString(s) > width {
		n := 0
		for i := range s {
			if n == width {
				s = strings.TrimSpace(s[:i])
				break
			}
			n++
		}
	}
	if s == "" {
		return nil
	}
	return &s
}

// width reads the VARCHAR width of a field of row from its gorm tag: N for
// "type:varchar(N)", 0 for any other type. A field without a type is a bug
// in this package, caught by its tests at start-up.
func width(row any, field string) int {
	f, ok := reflect.TypeOf(row).FieldByName(field)
	if !ok {
		panic("summary: no field " + field)
	}
	for _, part := range strings.Split(f.Tag.Get("gorm"), ";") {
		typ, ok := strings.CutPrefix(part, "type:")
		if !ok {
			continue
		}
		n, ok := strings.CutPrefix(typ, "varchar(")
		if !ok {
			return 0
		}
		w, err := strconv.Atoi(strings.TrimSuffix(n, ")"))
		if err != nil {
			panic("summary: bad width in the tag of " + field)
		}
		return w
	}
	panic("summary: no column type in the tag of " + field)
}
