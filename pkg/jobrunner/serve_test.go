package jobrunner

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/jobspec"
)

// fakeRunSpec is a run whose "engine" is a shell script standing in for
// the venv's python: it sleeps ENGINE_SLEEP seconds and exits 0. No
// sandbox and no limits, so nothing here needs Python or Landlock.
func fakeRunSpec(t *testing.T, dir, id string, sleep float64) *jobspec.Spec {
	t.Helper()
	venv := filepath.Join(dir, "venv")
	if err := os.MkdirAll(filepath.Join(venv, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nsleep \"$ENGINE_SLEEP\"\n"
	if err := os.WriteFile(venvPython(venv), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(venv, markerName), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config")
	doc := filepath.Join(dir, "doc.csv")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(doc, []byte("a,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "runs", id)
	return &jobspec.Spec{
		Version: jobspec.Version, Kind: jobspec.KindRun, JobID: id,
		EventsPath: filepath.Join(runDir, "logs", "events.ndjson"),
		Env:        map[string]string{"PATH": os.Getenv("PATH"), "ENGINE_SLEEP": fmt.Sprint(sleep)},
		Sandbox:    &jobspec.Sandbox{Mode: "off"},
		Run: &jobspec.RunSpec{VenvDir: venv, ConfigDir: cfg, RunDir: runDir,
			DocumentPath: doc, InputName: "doc.csv"},
	}
}

// server runs Serve on pipes: send specs and raw lines, read results.
type server struct {
	t        *testing.T
	specs    *io.PipeWriter
	renewals *io.PipeWriter
	results  *bufio.Reader
	done     chan error
	failed   chan string
}

func startServer(t *testing.T, ctx context.Context) *server {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	renR, renW := io.Pipe()
	s := &server{t: t, specs: inW, renewals: renW, results: bufio.NewReader(outR), done: make(chan error, 1), failed: make(chan string, 16)}
	go func() {
		s.done <- Serve(ctx, inR, outW, renR, func(msg string) { s.failed <- msg })
		outW.Close()
	}()
	t.Cleanup(func() { inW.Close(); renW.Close() })
	return s
}

func (s *server) send(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.specs, line+"\n"); err != nil {
		s.t.Fatal(err)
	}
}

func (s *server) sendSpec(spec *jobspec.Spec) {
	s.t.Helper()
	var b strings.Builder
	if err := spec.EncodeLine(&b); err != nil {
		s.t.Fatal(err)
	}
	s.send(strings.TrimSuffix(b.String(), "\n"))
}

func (s *server) result() *jobspec.Result {
	s.t.Helper()
	line, err := s.results.ReadBytes('\n')
	if err != nil {
		s.t.Fatalf("no result line: %v", err)
	}
	var r jobspec.Result
	if err := json.Unmarshal(line, &r); err != nil {
		s.t.Fatalf("result %q: %v", line, err)
	}
	return &r
}

// One jobrunner serves job after job: each gets its own result line, in
// order, and its own events file; a line that is no spec, or one over
// the size limit, fails that job alone, and the next is served.
//
// Not parallel: each step's end kills every descendant of this process
// (with the jobrunner a subreaper, those are the step's own), so another
// test's child would die with it.
func TestServeJobAfterJob(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, context.Background())
	first, second := fakeRunSpec(t, dir, "job-1", 0), fakeRunSpec(t, dir, "job-2", 0)

	s.sendSpec(first)
	if r := s.result(); r.JobID != "job-1" || r.Status != jobspec.StatusSucceeded {
		t.Fatalf("first job: %+v", r)
	}
	s.send("{not json")
	if r := s.result(); r.Reason != jobspec.ReasonBadSpec || !strings.Contains(r.Error, "not valid JSON") {
		t.Errorf("malformed line: %+v, want a bad_spec failure", r)
	}
	s.send(`{"version":1,"kind":"run","pad":"` + strings.Repeat("x", jobspec.MaxSpecBytes) + `"}`)
	if r := s.result(); r.Reason != jobspec.ReasonBadSpec || !strings.Contains(r.Error, "larger than") {
		t.Errorf("oversized line: %+v, want a bad_spec failure naming the size", r)
	}
	s.sendSpec(second)
	if r := s.result(); r.JobID != "job-2" || r.Status != jobspec.StatusSucceeded {
		t.Fatalf("job after the bad lines: %+v", r)
	}
	for _, spec := range []*jobspec.Spec{first, second} {
		data, err := os.ReadFile(spec.EventsPath)
		if err != nil || strings.Count(string(data), `"event":"run.start"`) != 1 || !strings.Contains(string(data), spec.JobID) {
			t.Errorf("%s events (err %v):\n%s", spec.JobID, err, data)
		}
	}
	if msg := <-s.failed; !strings.Contains(msg, "not valid JSON") {
		t.Errorf("first failure told = %q", msg)
	}
	s.specs.Close()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("Serve after its specs ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return when its specs ended")
	}
}

// Renewals reach the job in hand only by its tag: the first job is kept
// alive past its first lease by its own renewals; the second, receiving
// only the first one's (a stale tag), is fenced when its lease lapses.
// Not parallel, as TestServeJobAfterJob.
func TestServeFencesEachJobByItsTag(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, context.Background())
	renew := func(tag string, stop <-chan struct{}) {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond): // a heartbeat's pace, not a wait
				fmt.Fprintf(s.renewals, "0.6 %s\n", tag)
			}
		}
	}
	lease := func(tag string) *jobspec.Lease {
		return &jobspec.Lease{RemainingSeconds: 0.6, MarginSeconds: 0.1, RenewalFD: 3, Tag: tag}
	}

	kept := fakeRunSpec(t, dir, "job-kept", 1.0)
	kept.Lease = lease("1")
	stop := make(chan struct{})
	go renew("1", stop)
	s.sendSpec(kept)
	if r := s.result(); r.Status != jobspec.StatusSucceeded {
		t.Fatalf("job renewed by its own tag: %+v, want succeeded past its first lease", r)
	}

	fenced := fakeRunSpec(t, dir, "job-fenced", 30)
	fenced.Lease = lease("2")
	started := time.Now()
	s.sendSpec(fenced)
	r := s.result()
	close(stop)
	if r.Reason != jobspec.ReasonLeaseLapsed {
		t.Fatalf("job that got only another job's renewals: %+v, want lease_lapsed", r)
	}
	if took := time.Since(started); took > 10*time.Second {
		t.Errorf("fenced after %v, want about 0.5 s", took)
	}
}

// A SIGTERM (ctx) while no job is in hand ends Serve at once.
func TestServeEndsWhenStoppedIdle(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	s := startServer(t, ctx)
	cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("Serve stopped while idle: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not end when stopped while idle")
	}
}
