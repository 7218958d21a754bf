package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/test/testfs"
)

// Symlink-proof paths, certain refusals and a full disk (issue 11).

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// wantRefused checks that a job failed on its first attempt with a message
// containing every part.
func wantRefused(t *testing.T, what string, r jobRow, parts ...string) {
	t.Helper()
	if r.Status != "failed" || r.AttemptCount != 1 {
		t.Errorf("%s = %s after %d attempts (%q), want failed on the first attempt", what, r.Status, r.AttemptCount, r.errText())
		return
	}
	for _, p := range parts {
		if !strings.Contains(r.errText(), p) {
			t.Errorf("%s failed with %q, want it to say %q", what, r.errText(), p)
		}
	}
}

// TestSymlinkedFoldersAreRefused: a link planted anywhere below the
// documents, configuration or runs root is never followed; the job fails
// at once with an error naming the link, and nothing is read or written
// through it.
func TestSymlinkedFoldersAreRefused(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		base := t.TempDir()
		docs, configs := filepath.Join(base, "docs"), filepath.Join(base, "configs")
		w, cfg, build := readyWorld(t, backend, map[string]string{"ADE_DOCUMENTS_DIR": docs, "ADE_CONFIGS_DIR": configs})
		wsDocs := filepath.Join(docs, w.ws, "documents")

		// documents/<ws>/documents/evil -> /etc, stored_uri 'evil/passwd'.
		evilDoc := w.addDocument("passwd", csv())
		w.exec(`UPDATE documents SET stored_uri = 'evil/passwd' WHERE id = ?`, evilDoc)
		mustSymlink(t, "/etc", filepath.Join(wsDocs, "evil"))
		evil := w.addRun(cfg, evilDoc)
		r := w.waitForStatus("runs", []string{evil}, 2*time.Minute)[evil]
		wantRefused(t, "run of evil/passwd", r, `"`+w.ws+`/documents/evil" is a symbolic link`)
		if entries, _ := os.ReadDir(filepath.Join(w.runDir(evil), "input")); len(entries) != 0 {
			t.Errorf("staged %v through the link", entries)
		}
		assertDocumentChanges(t, w, evilDoc, "failed", []string{"processing", "failed"})

		// A linked workspace folder in the documents root.
		wsDoc := w.addDocument("a.csv", csv())
		moved := filepath.Join(base, "elsewhere", w.ws)
		mustRename(t, filepath.Join(docs, w.ws), moved)
		mustSymlink(t, moved, filepath.Join(docs, w.ws))
		wsRun := w.addRun(cfg, wsDoc)
		r = w.waitForStatus("runs", []string{wsRun}, 2*time.Minute)[wsRun]
		wantRefused(t, "run of a document in a linked workspace folder", r, `"`+w.ws+`" is a symbolic link`)
		if err := os.Remove(filepath.Join(docs, w.ws)); err != nil {
			t.Fatal(err)
		}
		mustRename(t, moved, filepath.Join(docs, w.ws))

		// A linked run folder: created before the run is claimed.
		w.stopAll()
		outside := filepath.Join(base, "outside-run")
		if err := os.MkdirAll(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		runLinked := w.addRun(cfg, w.addDocument("b.csv", csv()))
		if err := os.MkdirAll(filepath.Dir(w.runDir(runLinked)), 0o755); err != nil {
			t.Fatal(err)
		}
		mustSymlink(t, outside, w.runDir(runLinked))

		// A linked configuration package folder, for a run and a build.
		cfg2 := w.addConfig("")
		pkg := filepath.Join(configs, w.ws, "config_packages", cfg2)
		w.installReadyBuild(cfg2, w.addBuild(cfg2))
		w.start()
		mustRename(t, pkg, filepath.Join(base, "elsewhere-config"))
		mustSymlink(t, filepath.Join(base, "elsewhere-config"), pkg)
		cfgRun := w.addRun(cfg2, w.addDocument("c.csv", csv()))
		cfgBuild := w.addBuild(cfg2)

		rows := w.waitForStatus("runs", []string{runLinked, cfgRun}, 2*time.Minute)
		wantRefused(t, "run in a linked run folder", rows[runLinked], `"`+w.ws+`/runs/`+runLinked+`" is a symbolic link`)
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Errorf("wrote %v through the linked run folder", entries)
		}
		link := `"` + w.ws + `/config_packages/` + cfg2 + `" is a symbolic link`
		wantRefused(t, "run of a linked configuration package", rows[cfgRun], link)
		b := w.waitForStatus("builds", []string{cfgBuild}, 2*time.Minute)[cfgBuild]
		wantRefused(t, "build of a linked configuration package", b, link)

		// A linked build folder (venvs root): the run is refused, the
		// build's environment is neither used nor rebuilt through it.
		buildDir := w.buildDir(cfg, build)
		movedBuild := filepath.Join(base, "elsewhere-build")
		mustRename(t, buildDir, movedBuild)
		mustSymlink(t, movedBuild, buildDir)
		venvRun := w.addRun(cfg, w.addDocument("d.csv", csv()))
		r = w.waitForStatus("runs", []string{venvRun}, 2*time.Minute)[venvRun]
		wantRefused(t, "run with a linked build folder", r, `"`+w.ws+`/`+cfg+`/`+build+`" is a symbolic link`)
		if err := os.Remove(buildDir); err != nil {
			t.Fatal(err)
		}
		mustRename(t, movedBuild, buildDir)

		good := w.addRun(cfg, w.addDocument("good.csv", csv()))
		if r := w.waitForStatus("runs", []string{good}, 2*time.Minute)[good]; r.Status != "succeeded" {
			t.Errorf("good run after the refused ones = %+v (%s), want succeeded", r, r.errText())
		}
	})
}

// TestCertainRefusalsFailOnce: input no retry can fix fails on the first
// attempt with a clear message; the worker goes on.
func TestCertainRefusalsFailOnce(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, nil)
		wsDocs := filepath.Join(w.dir, "workspaces", w.ws, "documents")
		storedPath := func(doc string) string {
			var stored string
			w.query(&stored, `SELECT stored_uri FROM documents WHERE id = ?`, doc)
			return filepath.Join(wsDocs, stored)
		}
		w.stopAll()

		folderDoc := w.addDocument("folder.csv", csv())
		p := storedPath(folderDoc)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		fifoDoc := w.addDocument("fifo.csv", csv())
		p = storedPath(fifoDoc)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := exec.Command("mkfifo", p).Run(); err != nil {
			t.Fatal(err)
		}
		missingDoc := w.addDocument("missing.csv", csv())
		if err := os.Remove(storedPath(missingDoc)); err != nil {
			t.Fatal(err)
		}
		linkDoc := w.addDocument("link.csv", csv())
		p = storedPath(linkDoc)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		mustSymlink(t, "/etc/passwd", p)
		badPathDoc := w.addDocument("bad.csv", csv())
		w.exec(`UPDATE documents SET stored_uri = '../../x/../../etc/passwd' WHERE id = ?`, badPathDoc)
		noPackage := w.addConfig("")

		runs := map[string][]string{
			w.addRun(cfg, folderDoc):  {"not a regular file", "a folder"},
			w.addRun(cfg, fifoDoc):    {"not a regular file", "a named pipe"},
			w.addRun(cfg, missingDoc): {"document file not found"},
			w.addRun(cfg, linkDoc):    {"is a symbolic link"},
			w.addRun(cfg, badPathDoc): {"stored_uri"},
		}
		noPkgBuild := w.addBuild(noPackage)
		if err := os.RemoveAll(filepath.Join(w.dir, "workspaces", w.ws, "config_packages", noPackage)); err != nil {
			t.Fatal(err)
		}
		good := w.addRun(cfg, w.addDocument("good.csv", csv()))
		w.start()
		ids := []string{good}
		for id := range runs {
			ids = append(ids, id)
		}
		rows := w.waitForStatus("runs", ids, 2*time.Minute)
		for id, parts := range runs {
			wantRefused(t, "run "+id, rows[id], parts...)
		}
		b := w.waitForStatus("builds", []string{noPkgBuild}, 2*time.Minute)[noPkgBuild]
		wantRefused(t, "build of a missing configuration package", b, "configuration package not found")
		if r := rows[good]; r.Status != "succeeded" {
			t.Errorf("good run = %+v (%s), want succeeded", r, r.errText())
		}
	})
}

// TestDiskFull: an engine fills the runs disk. The events file still ends
// on whole JSON lines, with run.complete last; the run fails saying no
// space was left and where; the attempt's output does not stay behind, so
// the next run on that disk succeeds.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		runs := testfs.SmallDisk(t, "2m")
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_RUNS_DIR": runs})
		full := w.addRun(cfg, w.addDocument("full.csv", csv("fill-disk")))
		r := w.waitForStatus("runs", []string{full}, 3*time.Minute)[full]
		events := filepath.Join(runs, w.ws, "runs", full, "logs", "events.ndjson")
		if r.Status != "failed" || !strings.Contains(r.errText(), "no space left on device writing "+events) {
			t.Errorf("run that filled the disk = %s (%q), want failed saying no space left on device writing %s", r.Status, r.errText(), events)
		}
		waitLastEvent(t, events, "run.complete")
		lines := readLines(t, events)
		if last := lines[len(lines)-1]; last["event"] != "run.complete" {
			t.Errorf("last event = %v, want run.complete", last["event"])
		}
		if _, err := os.Stat(filepath.Join(runs, w.ws, "runs", full, "output", "fill.bin")); !os.IsNotExist(err) {
			t.Errorf("the failed attempt's output is still there (stat: %v)", err)
		}
		good := w.addRun(cfg, w.addDocument("good.csv", csv()))
		if r := w.waitForStatus("runs", []string{good}, 2*time.Minute)[good]; r.Status != "succeeded" {
			t.Errorf("run after the disk was full = %+v (%s), want succeeded", r, r.errText())
		}
	})
}

// waitLastEvent waits until the events file's last line is the event.
func waitLastEvent(t *testing.T, path, name string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if lastEventIs(path, name) {
			return
		}
	}
	t.Errorf("%s does not end with %s", path, name)
}

// readLines parses every line of an events file, failing on a line that
// is not a whole JSON object or a file that ends mid-line.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		t.Fatalf("%s is empty or ends in a partial line", path)
	}
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d of %s is not a JSON object (%v): %.120q", len(out)+1, path, err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}
