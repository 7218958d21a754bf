package sandbox

import (
	"os"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	cases := []struct {
		name    string
		mode    Mode
		support Support
		err     []string // the refusal must name each
		warn    []string // the one warning must name each
	}{
		{"required on ABI 7", Required, Support{ABI: 7}, nil, nil},
		{"required on ABI 6", Required, Support{ABI: 6}, nil, nil},
		{"required on ABI 5", Required, Support{ABI: 5}, []string{"ABI 5", "needs Landlock ABI 6", "signals (ABI 6)", "abstract-sockets (ABI 6)", "ADE_WORKER_SANDBOX=best-effort"}, nil},
		{"required on ABI 3", Required, Support{ABI: 3}, []string{"ABI 3", "tcp (ABI 4)", "device-ioctl (ABI 5)", "signals (ABI 6)"}, nil},
		{"required without Landlock", Required, Support{Problem: "function not implemented"}, []string{"no Landlock (function not implemented)", "filesystem (ABI 1)", "ADE_WORKER_SANDBOX=required"}, nil},
		{"best-effort on ABI 7", BestEffort, Support{ABI: 7}, nil, nil},
		{"best-effort on ABI 3", BestEffort, Support{ABI: 3}, nil, []string{"best-effort", "ABI 3", "not enforced: tcp (ABI 4), device-ioctl (ABI 5), signals (ABI 6), abstract-sockets (ABI 6)"}},
		{"best-effort without Landlock", BestEffort, Support{Problem: "disabled"}, nil, []string{"no Landlock", "filesystem (ABI 1)"}},
		{"off", Off, Support{ABI: 7}, nil, []string{"ADE_WORKER_SANDBOX=off", "unconfined"}},
		{"required without seccomp", Required, Support{ABI: 7, NoSeccomp: "this kernel offers no seccomp filters"},
			[]string{"offers no seccomp filters", "sockets (seccomp filters)", "ADE_WORKER_SANDBOX=best-effort"}, nil},
		{"best-effort without seccomp", BestEffort, Support{ABI: 7, NoSeccomp: "no seccomp"}, nil, []string{"not enforced: sockets (seccomp filters)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			warnings, err := Check(tc.mode, tc.support)
			if (err != nil) != (tc.err != nil) {
				t.Fatalf("err = %v, want refusal %v", err, tc.err != nil)
			}
			for _, s := range tc.err {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("refusal %q does not name %q", err, s)
				}
			}
			if len(tc.warn) == 0 && len(warnings) > 0 || len(tc.warn) > 0 && len(warnings) != 1 {
				t.Fatalf("warnings = %q, want %d", warnings, min(1, len(tc.warn)))
			}
			for _, s := range tc.warn {
				if !strings.Contains(warnings[0], s) {
					t.Errorf("warning %q does not name %q", warnings[0], s)
				}
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"required": Required, " Best-Effort ": BestEffort, "best_effort": BestEffort, "OFF": Off} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "on", "strict"} {
		if _, err := ParseMode(in); err == nil {
			t.Errorf("ParseMode(%q) accepted", in)
		}
	}
}

func TestProbeSeesThisKernel(t *testing.T) {
	s := Probe()
	if s.ABI == 0 && s.Problem == "" {
		t.Fatalf("Probe() = %+v: no ABI and no reason", s)
	}
	if _, err := os.Stat("/proc/sys/kernel/seccomp/actions_avail"); err == nil && s.NoSeccomp != "" {
		t.Errorf("Probe() = %+v: no seccomp on a kernel that lists its actions", s)
	}
	t.Logf("this kernel: %+v", s)
}
