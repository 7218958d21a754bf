package jobspec

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// ReadLine frames a serving jobrunner's specs and results: lines up to the
// limit come whole (however small the reader's buffer), a longer one is
// skipped to its end and reported, and the next line is read as usual.
func TestReadLine(t *testing.T) {
	in := "short\n" + strings.Repeat("a", 40) + "\n" + strings.Repeat("b", 41) + "\nafter\nno newline"
	r := bufio.NewReaderSize(strings.NewReader(in), 16)
	want := []struct {
		line string
		err  error
	}{
		{"short", nil},
		{strings.Repeat("a", 40), nil},
		{"", ErrLineTooLong},
		{"after", nil},
		{"no newline", io.EOF},
		{"", io.EOF},
	}
	for i, w := range want {
		line, err := ReadLine(r, 40)
		if string(line) != w.line || !errors.Is(err, w.err) {
			t.Errorf("line %d = %q, %v; want %q, %v", i, line, err, w.line, w.err)
		}
	}
}
