// Package eventfile reads a job's events file whole, for tests: the worker
// itself only appends to it (pkg/eventlog).
package eventfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// ReadAll parses every line of the events file at path. It fails on the first
// line that is not a JSON object, naming its line number. It holds the whole
// file in memory.
func ReadAll(path string) ([]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("eventfile: %w", err)
	}
	defer f.Close()
	var events []map[string]any
	r := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			ev, perr := parseLine(line)
			if perr != nil {
				return events, fmt.Errorf("eventfile: %s line %d: %w", path, n, perr)
			}
			events = append(events, ev)
		}
		if errors.Is(err, io.EOF) {
			return events, nil
		}
		if err != nil {
			return events, fmt.Errorf("eventfile: read %s: %w", path, err)
		}
	}
}

func parseLine(line []byte) (map[string]any, error) {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	if t := bytes.TrimSpace(line); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	var ev map[string]any
	if err := json.Unmarshal(line, &ev); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	return ev, nil
}
