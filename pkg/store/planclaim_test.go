package store

import (
	"strings"
	"testing"
)

// TestPlanClaim: the order planClaim makes of candidates (given as
// "workspace:running" per row, oldest first), and when a window full of
// rows cannot decide and every workspace's heads are needed.
func TestPlanClaim(t *testing.T) {
	t.Parallel()
	fair, fifo := ClaimPolicy{}, ClaimPolicy{FIFO: true}
	tests := []struct {
		name   string
		policy ClaimPolicy
		capN   int
		window int
		rows   string // "A:0 A:0 B:1": one candidate a row, oldest first
		limit  int
		want   string // the rows chosen by index, or "every"
	}{
		{"levels then age", fair, 0, 10, "A:0 A:0 B:1 C:0", 4, "0 3 1 2"},
		{"the cap drops a workspace's rows at its level", fair, 2, 10, "A:1 A:1 B:0 B:0 B:0", 5, "2 0 3"},
		{"fifo keeps age under the cap", fifo, 1, 10, "A:0 A:0 B:0", 3, "0 2"},
		{"a full window decides when its level-0 rows suffice", fair, 0, 4, "A:0 B:0 A:0 C:0", 3, "0 1 3"},
		{"a full window of one busy workspace cannot", fair, 0, 4, "A:2 A:2 A:2 A:2", 1, "every"},
		{"a full window of one idle workspace cannot fill two slots", fair, 0, 4, "A:0 A:0 A:0 A:0", 2, "every"},
		{"fifo: a full window decides when it holds enough", fifo, 2, 4, "A:0 A:0 A:0 B:0", 3, "0 1 3"},
		{"fifo: a full window of a capped workspace cannot", fifo, 1, 4, "A:0 A:0 A:0 A:0", 2, "every"},
		{"a window not full always decides", fair, 0, 5, "A:3 A:3", 4, "0 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cands []candidate
			for i, r := range strings.Fields(tt.rows) {
				ws, n, _ := strings.Cut(r, ":")
				cands = append(cands, candidate{ID: string(rune('0' + i)), WorkspaceID: ws, N: int(n[0] - '0')})
			}
			ids, every := planClaim(cands, tt.policy, tt.capN, tt.window, tt.limit)
			got := strings.Join(ids, " ")
			if every {
				got = "every"
			}
			// The list may go on past limit (the take stops at limit and
			// passes over rows others hold); compare its first rows.
			if want := strings.Fields(tt.want); !every && len(ids) > len(want) {
				got = strings.Join(ids[:len(want)], " ")
			}
			if got != tt.want {
				t.Errorf("planClaim = %q, want %q", got, tt.want)
			}
		})
	}
}
