package eventfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadAll(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    int
		wantErr string
	}{
		{"empty file", "", 0, ""},
		{"two objects", "{\"a\":1}\n{\"b\":2}\n", 2, ""},
		{"last line without newline", "{\"a\":1}\n{\"b\":2}", 2, ""},
		{"array line", "{\"a\":1}\n[1,2]\n", 0, "line 2"},
		{"null line", "null\n", 0, "line 1"},
		{"blank line", "{\"a\":1}\n\n{\"b\":2}\n", 0, "line 2"},
		{"broken object", "{\"a\":\n", 0, "line 1"},
		{"trailing garbage", "{\"a\":1} x\n", 0, "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.ndjson")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			events, err := ReadAll(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadAll error = %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(events) != tt.want {
				t.Fatalf("ReadAll = %d events, %v; want %d", len(events), err, tt.want)
			}
		})
	}
	if _, err := ReadAll(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("ReadAll of a missing file succeeded")
	}
}
