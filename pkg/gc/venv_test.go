package gc

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
)

// venvWorld is a SQLite database with one old, unused ready build whose
// folder holds a ready venv.
type venvWorld struct {
	st    *store.Store
	c     *Collector
	build store.GCBuild
	dir   string
}

func newVenvWorld(t *testing.T) *venvWorld {
	t.Helper()
	root := t.TempDir()
	u, err := settings.ParseDatabaseURL("sqlite:///" + filepath.Join(root, "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, u, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-60 * 24 * time.Hour)
	id, _, err := st.EnqueueBuild(ctx, store.NewBuild{WorkspaceID: "ws", ConfigurationID: "cfg", Fingerprint: "f", MaxAttempts: 3}, old)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.TestDB().Exec(`UPDATE builds SET status = 'ready', finished_at = ? WHERE id = ?`, st.TestTime(old), id).Error; err != nil {
		t.Fatal(err)
	}
	lay := layout.Layout{Runs: filepath.Join(root, "runs"), Venvs: filepath.Join(root, "venvs"), Configs: root, Documents: root}
	w := &venvWorld{st: st, dir: filepath.Join(lay.Venvs, "ws", "cfg", id),
		c: New(st, lay, Policy{RunTTL: 30 * 24 * time.Hour, VenvTTL: 30 * 24 * time.Hour, TmpAge: time.Hour}, zerolog.Nop())}
	builds, err := st.Builds(ctx, "", 10)
	if err != nil || len(builds) != 1 {
		t.Fatalf("builds: %v %v", builds, err)
	}
	w.build = builds[0]
	for _, f := range []string{".venv/" + readyMarker, ".venv/bin/python"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(w.dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(w.dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// A run queued for the build after the pass listed what is in use: the
// check made under the build lock keeps the venv, ready marker included.
func TestVenvKeptWhenARunAppearsDuringThePass(t *testing.T) {
	w := newVenvWorld(t)
	ctx := context.Background()
	if _, err := w.st.EnqueueRun(ctx, store.NewRun{WorkspaceID: "ws", ConfigurationID: "cfg", DocumentID: "d", BuildID: w.build.ID, MaxAttempts: 3}, time.Now()); err != nil {
		t.Fatal(err)
	}
	res := &Result{}
	if err := w.c.build(ctx, w.build, "" /* listed before the run came */, time.Now(), res); err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 0 {
		t.Errorf("items %+v, want none", res.Items)
	}
	if _, err := os.Stat(filepath.Join(w.dir, ".venv", readyMarker)); err != nil {
		t.Errorf("the ready marker did not come back: %v", err)
	}
}

// A build (or a run's rebuild) holding the build lock keeps its folder.
func TestVenvKeptWhileItsBuildLockIsHeld(t *testing.T) {
	w := newVenvWorld(t)
	f, err := os.OpenFile(filepath.Join(w.dir, buildLockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	res := &Result{}
	if err := w.c.build(context.Background(), w.build, "", time.Now(), res); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w.dir, ".venv", readyMarker)); err != nil || len(res.Items) != 0 {
		t.Errorf("venv touched while its build lock was held: %v, items %+v", err, res.Items)
	}
	f.Close()
	if err := w.c.build(context.Background(), w.build, "", time.Now(), res); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(w.dir); !os.IsNotExist(err) || len(res.Items) != 1 || res.Items[0].Target != Venv {
		t.Errorf("after the lock was released: folder %v, items %+v; want it removed", err, res.Items)
	}
}
