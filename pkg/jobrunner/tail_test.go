package jobrunner

import (
	"strings"
	"testing"
)

// TestTailNeverShowsAScrap: the tail keeps the last bytes of stderr, but a
// line whose start fell off (a long JSON event) must not pass for the
// engine's last message.
func TestTailNeverShowsAScrap(t *testing.T) {
	long := `{"event":"engine.run.failed","data":{"pad":"` + strings.Repeat("x", 5000) + `"}}` + "\n"
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"short lines", []string{"one\n", "two\n"}, "two"},
		{"long event last", []string{"OSError: [Errno 28] No space left on device\n", long}, ""},
		{"message after a long event", []string{long, "OSError: boom\n"}, "OSError: boom"},
		{"long event in small pieces", append(strings.SplitAfter(long[:4000], "x"), long[4000:]), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := &tailBuffer{max: 2048}
			for _, w := range tt.writes {
				tb.Write([]byte(w))
			}
			if got := tb.String(); got != tt.want {
				t.Errorf("tail = %.80q, want %q", got, tt.want)
			}
		})
	}
}
