package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/testfs"
)

// The garbage collector's tests make rows old by writing their timestamps
// and lay out folders by hand; only TestGCVenvRebuiltAfterCollection runs
// real jobs.

const day = 24 * time.Hour

// gcConfig inserts a configuration row (no package needed: gc only reads it).
func (w *world) gcConfig() string {
	w.t.Helper()
	id := store.NewID()
	if err := w.st.InsertConfiguration(context.Background(), store.NewConfiguration{ID: id, WorkspaceID: w.ws, DisplayName: "gc"}, time.Now()); err != nil {
		w.t.Fatal(err)
	}
	return id
}

// gcBuild inserts a build with status, finished ago (0: not finished), and
// makes its folder with a ready venv of venvBytes bytes.
func (w *world) gcBuild(cfg, status string, finishedAgo time.Duration, venvBytes int) string {
	w.t.Helper()
	id, _, err := w.st.EnqueueBuild(context.Background(), store.NewBuild{WorkspaceID: w.ws, ConfigurationID: cfg,
		Fingerprint: store.NewID(), MaxAttempts: 3}, time.Now().Add(-90*day))
	if err != nil {
		w.t.Fatal(err)
	}
	var finished any
	if finishedAgo > 0 {
		finished = w.ts(time.Now().Add(-finishedAgo))
	}
	w.exec(`UPDATE builds SET status = ?, started_at = ?, finished_at = ? WHERE id = ?`, status, w.ts(time.Now().Add(-90*day)), finished, id)
	dir := w.buildDir(cfg, id)
	testfs.WriteFile(w.t, filepath.Join(dir, ".venv", "ade-build.json"), 0)
	testfs.WriteFile(w.t, filepath.Join(dir, ".venv", "lib", "site.py"), venvBytes)
	return id
}

// gcRun inserts a run of build in status, finished (or started, for a
// running run) ago, with a folder of size bytes when size >= 0.
func (w *world) gcRun(cfg, build, status string, ago time.Duration, size int) string {
	w.t.Helper()
	id, err := w.st.EnqueueRun(context.Background(), store.NewRun{WorkspaceID: w.ws, ConfigurationID: cfg,
		DocumentID: store.NewID(), BuildID: build, MaxAttempts: 3}, time.Now().Add(-90*day))
	if err != nil {
		w.t.Fatal(err)
	}
	at := w.ts(time.Now().Add(-ago))
	switch status {
	case "queued":
	case "running":
		w.exec(`UPDATE runs SET status = 'running', started_at = ?, claimed_by = 'elsewhere', claim_expires_at = ? WHERE id = ?`,
			at, w.ts(time.Now().Add(time.Hour)), id)
	case "cancelled": // as the API cancels: cancelled_at (completed_at too, but test the fallback)
		w.exec(`UPDATE runs SET status = 'cancelled', started_at = ?, cancelled_at = ? WHERE id = ?`, at, at, id)
	default:
		w.exec(`UPDATE runs SET status = ?, started_at = ?, completed_at = ? WHERE id = ?`, status, at, at, id)
	}
	if size >= 0 {
		testfs.WriteFile(w.t, filepath.Join(w.runDir(id), "input", "doc.csv"), size)
		testfs.WriteFile(w.t, w.runEvents(id), 100)
	}
	return id
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// gcLine is one folder `supervisor gc` listed.
type gcLine struct {
	action, target, path, why string
	bytes                     int64
}

var gcColumns = regexp.MustCompile(`\s{2,}`)

// parseGC reads the listing of `supervisor gc`, by path, and its total.
func parseGC(t *testing.T, out string) (map[string]gcLine, int64) {
	t.Helper()
	lines := map[string]gcLine{}
	var total int64 = -1
	for _, l := range strings.Split(out, "\n") {
		if m := regexp.MustCompile(`^total [a-z ]+: \d+ folders, (\d+) bytes`).FindStringSubmatch(l); m != nil {
			total, _ = strconv.ParseInt(m[1], 10, 64)
			continue
		}
		f := gcColumns.Split(strings.TrimSpace(l), 5)
		if len(f) < 4 || f[0] == "ACTION" {
			continue
		}
		n, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			continue
		}
		gl := gcLine{action: f[0], target: f[1], bytes: n, path: f[3]}
		if len(f) == 5 {
			gl.why = f[4]
		}
		lines[gl.path] = gl
	}
	if total < 0 {
		t.Fatalf("no total in gc output:\n%s", out)
	}
	return lines, total
}

// holdFlock locks path (as a build in progress holds its build lock) until
// the test ends.
func holdFlock(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}

func setMtime(t *testing.T, path string, ago time.Duration) {
	t.Helper()
	at := time.Now().Add(-ago)
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

func (w *world) countRows() (runs, builds int64) {
	w.query(&runs, `SELECT COUNT(*) FROM runs`)
	w.query(&builds, `SELECT COUNT(*) FROM builds`)
	return runs, builds
}

func TestGCRemovesExactlyWhatIsOld(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, nil) // defaults: 30-day TTLs, build timeout 600 s
		cfg := w.gcConfig()
		old, recent, active, forQueued, forRunning, building :=
			w.gcBuild(cfg, "ready", 60*day, 5000), w.gcBuild(cfg, "ready", 60*day, 7),
			w.gcBuild(cfg, "ready", 60*day, 7), w.gcBuild(cfg, "ready", 60*day, 7),
			w.gcBuild(cfg, "ready", 60*day, 7), w.gcBuild(cfg, "building", 0, 7)
		failedOld := w.gcBuild(cfg, "failed", 45*day, 300)
		w.exec(`UPDATE configurations SET active_build_id = ? WHERE id = ?`, active, cfg)

		oldOK := w.gcRun(cfg, old, "succeeded", 40*day, 1000)
		oldFailed := w.gcRun(cfg, old, "failed", 31*day, 2000)
		oldCancelled := w.gcRun(cfg, old, "cancelled", 35*day, 3000)
		young := w.gcRun(cfg, recent, "succeeded", 10*day, 10)
		running := w.gcRun(cfg, forRunning, "running", 60*day, 10)
		queued := w.gcRun(cfg, forQueued, "queued", 0, 10)
		w.gcRun(cfg, old, "succeeded", 50*day, -1) // folder already gone: nothing to list

		// Temporary build folders: old, young, and old but locked by a build
		// at work (the test holds its build lock).
		oldTmp := filepath.Join(w.buildDir(cfg, recent), ".venv.tmp-111")
		testfs.WriteFile(t, filepath.Join(oldTmp, "bin", "python"), 400)
		setMtime(t, oldTmp, 3*time.Hour)
		youngTmp := filepath.Join(w.buildDir(cfg, recent), ".venv.tmp-222")
		testfs.WriteFile(t, filepath.Join(youngTmp, "bin", "python"), 400)
		lockedTmp := filepath.Join(w.buildDir(cfg, building), ".venv.tmp-333")
		testfs.WriteFile(t, filepath.Join(lockedTmp, "bin", "python"), 400)
		setMtime(t, lockedTmp, 3*time.Hour)
		holdFlock(t, filepath.Join(w.buildDir(cfg, building), ".build.lock"))

		runsBefore, buildsBefore := w.countRows()
		want := map[string]int64{ // path -> bytes
			w.runDir(oldOK): 1100, w.runDir(oldFailed): 2100, w.runDir(oldCancelled): 3100,
			w.buildDir(cfg, old): 5000, w.buildDir(cfg, failedOld): 300, oldTmp: 400,
		}
		kept := []string{w.runDir(young), w.runDir(running), w.runDir(queued), w.buildDir(cfg, recent), w.buildDir(cfg, active),
			w.buildDir(cfg, forQueued), w.buildDir(cfg, forRunning), w.buildDir(cfg, building), youngTmp, lockedTmp}

		check := func(out, action string) {
			t.Helper()
			lines, total := parseGC(t, out)
			var sum int64
			for path, bytes := range want {
				l, ok := lines[path]
				if !ok || l.action != action || l.bytes != bytes {
					t.Errorf("gc listed %s as %+v, want %q with %d bytes\n%s", path, l, action, bytes, out)
				}
				sum += bytes
			}
			if len(lines) != len(want) || total != sum {
				t.Errorf("gc listed %d folders with a total of %d bytes, want %d and %d:\n%s", len(lines), total, len(want), sum, out)
			}
		}
		check(w.supervisor("gc", "--dry-run"), "would remove")
		for path := range want {
			if !exists(path) {
				t.Errorf("--dry-run removed %s", path)
			}
		}
		check(w.supervisor("gc"), "removed")
		for path := range want {
			if exists(path) {
				t.Errorf("gc kept %s, want it removed", path)
			}
		}
		for _, path := range kept {
			if !exists(path) {
				t.Errorf("gc removed %s, want it kept", path)
			}
		}
		if r, b := w.countRows(); r != runsBefore || b != buildsBefore {
			t.Errorf("rows after gc: %d runs, %d builds; want %d and %d (gc never deletes rows)", r, b, runsBefore, buildsBefore)
		}
		if lines, total := parseGC(t, w.supervisor("gc")); len(lines) != 0 || total != 0 {
			t.Errorf("a second pass found %v (%d bytes), want nothing", lines, total)
		}
	})
}

func TestGCNeverFollowsSymlinks(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, nil)
		cfg := w.gcConfig()
		outside := t.TempDir()

		// A link where a run folder should be: the link goes, its target stays.
		linked := w.gcRun(cfg, "", "succeeded", 40*day, 10)
		target := filepath.Join(outside, "run-target")
		testfs.WriteFile(t, filepath.Join(target, "precious"), 50)
		if err := os.RemoveAll(w.runDir(linked)); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, w.runDir(linked)); err != nil {
			t.Fatal(err)
		}

		// A link where a workspace folder should be: refused, reported.
		otherWS := "ws-link-" + store.NewID()[:8]
		id, err := w.st.EnqueueRun(context.Background(), store.NewRun{WorkspaceID: otherWS, ConfigurationID: cfg,
			DocumentID: store.NewID(), MaxAttempts: 3}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		w.exec(`UPDATE runs SET status = 'failed', completed_at = ? WHERE id = ?`, w.ts(time.Now().Add(-40*day)), id)
		testfs.WriteFile(t, filepath.Join(outside, "ws", "runs", id, "precious"), 60)
		wsLink := filepath.Join(w.dir, "workspaces", otherWS)
		if err := os.Symlink(filepath.Join(outside, "ws"), wsLink); err != nil {
			t.Fatal(err)
		}

		out, errOut, err := w.try("gc")
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(errOut, "1 folders were not removed") {
			t.Errorf("gc: %v, stderr %q; want exit 1 saying one folder was not removed", err, errOut)
		}
		lines, _ := parseGC(t, out)
		l := lines[w.runDir(linked)]
		if l.action != "removed" || !strings.Contains(l.why, "symbolic link") {
			t.Errorf("linked run folder listed as %+v, want removed as a symbolic link:\n%s", l, out)
		}
		refused := filepath.Join(wsLink, "runs", id)
		if l := lines[refused]; l.action != "NOT REMOVED" || !strings.Contains(l.why, "symbolic link "+wsLink) {
			t.Errorf("run behind a workspace link listed as %+v, want NOT REMOVED naming %s:\n%s", l, wsLink, out)
		}
		if exists(w.runDir(linked)) {
			t.Error("the link where the run folder was is still there")
		}
		for _, p := range []string{filepath.Join(target, "precious"), filepath.Join(outside, "ws", "runs", id, "precious"), wsLink} {
			if !exists(p) {
				t.Errorf("%s was removed; gc must not follow links", p)
			}
		}
	})
}

func TestGCOnePassAtATime(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, nil)
		cfg := w.gcConfig()
		first := w.gcRun(cfg, "", "succeeded", 40*day, 10)

		// Another process (this test) holds the gc lock, as a pass would.
		release, ok, err := w.st.TryGCLock(context.Background())
		if err != nil || !ok {
			t.Fatalf("take the gc lock: %v %v", ok, err)
		}
		_, errOut, err := w.try("gc")
		if err == nil || !strings.Contains(errOut, "another gc pass holds the gc lock") {
			t.Errorf("gc while the lock is held: %v, stderr %q; want a refusal", err, errOut)
		}
		if !exists(w.runDir(first)) {
			t.Error("gc removed a folder without the lock")
		}
		release()
		w.supervisor("gc")
		if exists(w.runDir(first)) {
			t.Error("gc after the lock was released kept the old folder")
		}

		// Several passes started together: each folder is removed and
		// counted exactly once, whichever pass gets the lock.
		const n = 100
		for i := 0; i < n; i++ {
			w.gcRun(cfg, "", "failed", 40*day, 10)
		}
		var mu sync.Mutex
		removed, refused := 0, 0
		var wg sync.WaitGroup
		for i := 0; i < 3; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, errOut, err := w.try("gc")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					m := regexp.MustCompile(`removed run_folder: (\d+) folders`).FindStringSubmatch(out)
					if m == nil {
						t.Errorf("gc output without a run_folder count:\n%s", out)
						return
					}
					k, _ := strconv.Atoi(m[1])
					removed += k
				case strings.Contains(errOut, "holds the gc lock"):
					refused++
				default:
					t.Errorf("gc: %v\n%s\n%s", err, out, errOut)
				}
			}()
		}
		wg.Wait()
		if removed != n {
			t.Errorf("concurrent passes removed %d folders in all (%d refused the lock), want %d", removed, refused, n)
		}
		left, _ := filepath.Glob(filepath.Join(w.dir, "workspaces", w.ws, "runs", "*"))
		if len(left) != 0 {
			t.Errorf("%d run folders left, want none", len(left))
		}
	})
}

func TestGCVenvRebuiltAfterCollection(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, map[string]string{"ADE_WORKER_GC_INTERVAL": "0"})
		cfg := w.addConfig("")
		build := w.addBuild(cfg)
		w.installReadyBuild(cfg, build)
		first := w.start()
		doc := w.addDocument("people.csv", csv())
		run := w.addRun(cfg, doc)
		if r := w.waitForStatus("runs", []string{run}, 2*time.Minute)[run]; r.Status != "succeeded" {
			t.Fatalf("run: %+v", r)
		}
		// The configuration moved on, and nothing used the build for 40 days.
		long := w.ts(time.Now().Add(-40 * day))
		w.exec(`UPDATE configurations SET active_build_id = NULL WHERE id = ?`, cfg)
		w.exec(`UPDATE runs SET started_at = ?, completed_at = ? WHERE id = ?`, long, long, run)
		w.exec(`UPDATE builds SET started_at = ?, finished_at = ? WHERE id = ?`, long, long, build)
		// A supervisor that collects every half second takes over.
		w.stop(first)
		w.env["ADE_WORKER_GC_INTERVAL"] = "0.5"
		addr := freeAddr(t)
		w.env["ADE_WORKER_HTTP_ADDR"] = addr
		w.start()

		venv := filepath.Join(w.buildDir(cfg, build), ".venv")
		for deadline := time.Now().Add(2 * time.Minute); exists(w.buildDir(cfg, build)) || exists(w.runDir(run)); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the supervisor's gc did not remove the build folder and the run folder within 2 minutes")
			}
		}
		// The pass is counted once the supervisor has handed it to metrics.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			m := scrape(t, addr)
			if m[series("ade_worker_gc_removed_total", "target", "venv")] == 1 && m[series("ade_worker_gc_removed_total", "target", "run_folder")] == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ade_worker_gc_removed_total: venv %v, run_folder %v; want 1 and 1",
					m[series("ade_worker_gc_removed_total", "target", "venv")], m[series("ade_worker_gc_removed_total", "target", "run_folder")])
			}
		}
		again := w.addRun(cfg, doc, "--build", build)
		if r := w.waitForStatus("runs", []string{again}, 5*time.Minute)[again]; r.Status != "succeeded" {
			t.Fatalf("run after gc: %+v (%s), want succeeded after rebuilding the venv", r, r.errText())
		}
		if !exists(filepath.Join(venv, "ade-build.json")) {
			t.Error("the venv was not rebuilt")
		}
		events, _ := os.ReadFile(w.runEvents(again))
		if !strings.Contains(string(events), "run.venv.rebuild") {
			t.Error("the run did not rebuild the venv")
		}
		if b := w.job("builds", build); b.Status != "ready" {
			t.Errorf("build after the rebuild: %+v, want ready", b)
		}
		// The supervisor logged its passes with their counts.
		log, _ := os.ReadFile(filepath.Join(w.dir, "supervisor-1.log"))
		plain := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAll(log, nil) // console colours
		if !regexp.MustCompile(`gc pass.*run_folder_removed=1 .*venv_removed=1 `).Match(plain) {
			t.Errorf("no gc pass line with venv_removed=1 in the supervisor log:\n%s", log)
		}
	})
}
