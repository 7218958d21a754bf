// Package telemetry is what the supervisor shows operators over HTTP: the
// liveness and readiness probes (/livez, /readyz) and Prometheus metrics
// (/metrics). It holds no global state: each supervisor makes its own Health
// and Metrics.
package telemetry

import (
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Names of the readiness conditions the supervisor sets. Other code may add
// its own with Health.Set.
const (
	CondDatabase  = "database"  // a database round trip succeeded recently
	CondSchema    = "schema"    // `supervisor migrate` has run
	CondJobrunner = "jobrunner" // the jobrunner binary is there
	CondWakeups   = "wakeups"   // instant wake-ups work, or polling took over
	CondDraining  = "draining"  // false from the first SIGTERM on
)

// Health is a set of named readiness conditions plus the claim loop's
// heartbeat for liveness. The zero value is not usable: call NewHealth.
type Health struct {
	mu     sync.Mutex
	conds  map[string]condition
	now    func() time.Time
	tick   time.Time     // the claim loop's last turn
	window time.Duration // liveness: how old tick may be
	drain  bool
}

type condition struct {
	ok     bool
	reason string
	at     time.Time
	maxAge time.Duration // 0: never goes stale
}

// Condition is one readiness condition as /readyz reports it.
type Condition struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

// NewHealth makes a Health whose liveness fails when the claim loop has not
// turned for longer than liveWindow. Each name in required starts as a
// failing condition ("not checked yet") until it is Set.
func NewHealth(liveWindow time.Duration, required ...string) *Health {
	h := &Health{conds: map[string]condition{}, now: time.Now, window: liveWindow}
	h.tick = h.now()
	for _, name := range required {
		h.conds[name] = condition{reason: "not checked yet"}
	}
	return h
}

// Set records the state of one readiness condition; ready needs every
// condition ok. reason says why it fails (or what holds it up).
func (h *Health) Set(name string, ok bool, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.conds[name]
	c.ok, c.reason, c.at = ok, reason, h.now()
	h.conds[name] = c
}

// Expire makes condition name fail when it was not Set for maxAge: for
// conditions a periodic check keeps fresh, so a check that hangs counts as a
// failing one.
func (h *Health) Expire(name string, maxAge time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.conds[name]
	if !ok {
		c = condition{reason: "not checked yet", at: h.now()}
	}
	c.maxAge = maxAge
	h.conds[name] = c
}

// Draining marks the supervisor as shutting down: not ready from now on,
// but still live while it drains its running jobs.
func (h *Health) Draining() {
	h.mu.Lock()
	h.drain = true
	h.mu.Unlock()
	h.Set(CondDraining, false, "shutting down: no new claims, running jobs finish")
}

// Tick records a turn of the claim loop (liveness).
func (h *Health) Tick() {
	h.mu.Lock()
	h.tick = h.now()
	h.mu.Unlock()
}

// Live reports whether the claim loop turned recently, or the supervisor is
// draining (its loop has ended on purpose).
func (h *Health) Live() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	age := h.now().Sub(h.tick)
	if h.drain || age <= h.window {
		return true, ""
	}
	return false, "claim loop has not turned for " + age.Round(time.Second).String()
}

// Ready reports whether every condition holds, and each condition sorted by
// name.
func (h *Health) Ready() (bool, []Condition) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	ready := true
	out := make([]Condition, 0, len(h.conds))
	for name, c := range h.conds {
		ok, reason := c.ok, c.reason
		if c.maxAge > 0 && now.Sub(c.at) > c.maxAge {
			ok = false
			reason = "no successful check for " + now.Sub(c.at).Round(time.Second).String()
			if c.reason != "" && !c.ok {
				reason += ": " + c.reason
			}
		}
		ready = ready && ok
		out = append(out, Condition{Name: name, OK: ok, Reason: reason})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return ready, out
}

// readyBody is the JSON /readyz answers with.
type readyBody struct {
	Ready      bool        `json:"ready"`
	Failing    []string    `json:"failing,omitempty"`
	Conditions []Condition `json:"conditions"`
}

func (h *Health) serveReady(w http.ResponseWriter, _ *http.Request) {
	ready, conds := h.Ready()
	body := readyBody{Ready: ready, Conditions: conds}
	for _, c := range conds {
		if !c.OK {
			body.Failing = append(body.Failing, c.Name)
		}
	}
	writeJSON(w, statusFor(ready), body)
}

func (h *Health) serveLive(w http.ResponseWriter, _ *http.Request) {
	live, reason := h.Live()
	writeJSON(w, statusFor(live), map[string]any{"live": live, "reason": reason})
}

func statusFor(ok bool) int {
	if ok {
		return http.StatusOK
	}
	return http.StatusServiceUnavailable
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
