package telemetry

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"
)

// clock is a settable time for Health.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newTestHealth(c *clock, names ...string) *Health {
	h := NewHealth(time.Minute, names...)
	h.now = c.now
	h.Tick()
	return h
}

func failing(h *Health) []string {
	_, conds := h.Ready()
	var out []string
	for _, c := range conds {
		if !c.OK {
			out = append(out, c.Name)
		}
	}
	return out
}

func TestReadiness(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	h := newTestHealth(c, CondDatabase, CondSchema)
	if got := failing(h); !reflect.DeepEqual(got, []string{CondDatabase, CondSchema}) {
		t.Fatalf("unchecked conditions must fail, failing = %v", got)
	}
	h.Set(CondDatabase, true, "round trip ok")
	h.Set(CondSchema, true, "migrated")
	if ready, _ := h.Ready(); !ready {
		t.Fatalf("all conditions ok but not ready: %v", failing(h))
	}

	// Another part of the program adds its own condition with one call.
	h.Set("sqlite_file", false, "the database file was replaced")
	if got := failing(h); !reflect.DeepEqual(got, []string{"sqlite_file"}) {
		t.Fatalf("failing = %v, want [sqlite_file]", got)
	}
	h.Set("sqlite_file", true, "same file")

	// A periodic check that stops reporting counts as failing.
	h.Expire(CondDatabase, 15*time.Second)
	c.advance(10 * time.Second)
	if ready, _ := h.Ready(); !ready {
		t.Fatal("fresh check reported as stale")
	}
	c.advance(10 * time.Second)
	if got := failing(h); !reflect.DeepEqual(got, []string{CondDatabase}) {
		t.Fatalf("stale database check: failing = %v", got)
	}
	h.Set(CondDatabase, true, "round trip ok")
	if ready, _ := h.Ready(); !ready {
		t.Fatal("a new check must end staleness")
	}

	h.Draining()
	if got := failing(h); !reflect.DeepEqual(got, []string{CondDraining}) {
		t.Fatalf("draining: failing = %v", got)
	}
}

func TestLiveness(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	h := newTestHealth(c, CondDatabase) // a failing database never affects liveness
	if live, _ := h.Live(); !live {
		t.Fatal("just ticked, not live")
	}
	c.advance(59 * time.Second)
	if live, _ := h.Live(); !live {
		t.Fatal("within the window, not live")
	}
	c.advance(2 * time.Second)
	if live, reason := h.Live(); live || reason == "" {
		t.Fatalf("claim loop stuck 61 s: live=%v reason=%q", live, reason)
	}
	h.Tick()
	if live, _ := h.Live(); !live {
		t.Fatal("ticked again, not live")
	}
	c.advance(time.Hour)
	h.Draining()
	if live, _ := h.Live(); !live {
		t.Fatal("a draining supervisor's loop ended on purpose: it must stay live")
	}
}

func TestReadyzBody(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	h := newTestHealth(c, CondDatabase, CondJobrunner)
	h.Set(CondJobrunner, true, "found")
	h.Set(CondDatabase, false, "connection refused")

	rec := httptest.NewRecorder()
	h.serveReady(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", rec.Code)
	}
	var body readyBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, rec.Body)
	}
	want := readyBody{Ready: false, Failing: []string{CondDatabase}, Conditions: []Condition{
		{Name: CondDatabase, OK: false, Reason: "connection refused"},
		{Name: CondJobrunner, OK: true, Reason: "found"},
	}}
	if !reflect.DeepEqual(body, want) {
		t.Fatalf("body %+v\nwant %+v", body, want)
	}

	h.Set(CondDatabase, true, "round trip ok")
	rec = httptest.NewRecorder()
	h.serveReady(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", rec.Code, rec.Body)
	}
}

func TestProbeURL(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{":9464", "http://127.0.0.1:9464/readyz"},
		{"0.0.0.0:9464", "http://127.0.0.1:9464/readyz"},
		{"[::]:9464", "http://127.0.0.1:9464/readyz"},
		{"127.0.0.1:8080", "http://127.0.0.1:8080/readyz"},
		{"10.1.2.3:9464", "http://10.1.2.3:9464/readyz"},
		{"[::1]:9464", "http://[::1]:9464/readyz"},
	} {
		got, err := ProbeURL(tt.addr)
		if err != nil || got != tt.want {
			t.Errorf("ProbeURL(%q) = %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "9464"} {
		if _, err := ProbeURL(bad); err == nil {
			t.Errorf("ProbeURL(%q) gave no error", bad)
		}
	}
}
