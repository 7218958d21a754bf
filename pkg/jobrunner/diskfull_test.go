package jobrunner

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/test/testfs"
)

// TestBuildOnFullDiskIsRetried is the failure seen in the field: the venvs
// folder on a full disk, python -m venv failed in ensurepip ("returned
// non-zero exit status 1", the disk never named) and removed what it wrote,
// so the disk was no longer full when the step had ended. On a 2 MB tmpfs
// pip fails and cleans up within a few milliseconds, between two samples
// of the free space (before pip got a step of its own this build failed
// for good, engine_failed); its error still says no space, so the result
// names the folder and its mount point, and is transient (retried).
func TestBuildOnFullDiskIsRetried(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3 to make a venv")
	}
	venvs := testfs.SmallDisk(t, "2m")
	configs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(configs, "cfg"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := &jobspec.Spec{Version: jobspec.Version, Kind: jobspec.KindBuild, JobID: "b1", Attempt: 1, WorkspaceID: "ws", ConfigurationID: "cfg",
		EventsPath: filepath.Join(venvs, "ws", "b1", "events.ndjson"),
		Env:        map[string]string{"PATH": "/usr/local/bin:/usr/bin:/bin"},
		Roots:      jobspec.Roots{Venvs: venvs, Configs: configs},
		Build: &jobspec.BuildSpec{VenvDir: filepath.Join(venvs, "ws", "b1", ".venv"), Python: python,
			EngineSpec: "ade-engine", ConfigDir: filepath.Join(configs, "cfg")}}
	res := Execute(context.Background(), spec)
	if res.Status != jobspec.StatusFailed || res.Reason != jobspec.ReasonDiskFull || !res.Retryable {
		t.Fatalf("result = %+v, want failed, disk_full, retryable", res)
	}
	for _, want := range []string{"no space left on device", "the venvs folder " + venvs + " is on a full disk", "mount point " + venvs} {
		if !strings.Contains(res.Error, want) {
			t.Errorf("error %q does not say %q", res.Error, want)
		}
	}
	if jobspec.ClassOf(res.Reason) != jobspec.Transient {
		t.Errorf("a full disk is %s, want transient", jobspec.ClassOf(res.Reason))
	}
}

// TestSpaceWatchNamesTheFullFolder: a folder whose filesystem is full
// while it is watched is reported, with its mount point, among folders
// with room; a folder with room alone is not.
func TestSpaceWatchNamesTheFullFolder(t *testing.T) {
	disk := testfs.SmallDisk(t, "1m")
	sub := filepath.Join(disk, "runs")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	roomy := watchSpace(context.Background(), []watchedFolder{{"runs", sub}})
	if d := roomy(); d != nil {
		t.Fatalf("watch of a folder with room = %v, want nothing", d)
	}
	stop := watchSpace(context.Background(), []watchedFolder{{"documents", t.TempDir()}, {"runs", sub}})
	f, err := os.Create(filepath.Join(sub, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	_, werr := f.Write(make([]byte, 2<<20)) // more than the disk holds: ENOSPC
	f.Close()
	if werr == nil {
		t.Fatal("writing 2 MB to a 1 MB disk succeeded")
	}
	d := stop() // the last sample is taken at stop, the disk still full
	if err := os.Remove(filepath.Join(sub, "fill")); err != nil {
		t.Fatal(err)
	}
	if d == nil {
		t.Fatal("the full disk was not seen")
	}
	if got := d.String(); !strings.Contains(got, "the runs folder "+sub+" is on a full disk (mount point "+disk+",") {
		t.Errorf("full disk = %q, want the runs folder %s and the mount point %s", got, sub, disk)
	}
}

// TestNoSpaceNamesTheFolderOfTheFile: a tool's "No space left on device:
// '<file>'" names the folder that holds the file (a run that filled the
// venvs folder, not its runs folder), else the folder the job writes most
// to.
func TestNoSpaceNamesTheFolderOfTheFile(t *testing.T) {
	spec := &jobspec.Spec{Kind: jobspec.KindRun, Roots: jobspec.Roots{Runs: t.TempDir(), Venvs: t.TempDir()}}
	folders := jobFolders(spec)
	file := filepath.Join(spec.Roots.Venvs, "ws", "b1", ".venv", "lib", "x.py")
	msg := "OSError: [Errno 28] No space left on device: '" + file + "'"
	if got := pathOfNoSpace(msg); got != file {
		t.Fatalf("pathOfNoSpace = %q, want %q", got, file)
	}
	d := diskOf(folders, pathOfNoSpace(msg))
	if d == nil || !strings.Contains(d.String(), "the venvs folder "+spec.Roots.Venvs+" is on a full disk") {
		t.Errorf("disk of %s = %v, want the venvs folder", file, d)
	}
	if d := diskOf(folders, "/elsewhere/x"); d != nil {
		t.Errorf("disk of a file outside the folders = %v, want none", d)
	}
	if got := pathOfNoSpace("OSError: [Errno 28] No space left on device"); got != "" {
		t.Errorf("pathOfNoSpace without a file = %q", got)
	}
}

// TestPathFailureOnFullDisk: a real ENOSPC from one of the job's own file
// operations (the events file, the scratch folder) is a full disk too:
// transient, and the disk is named.
func TestPathFailureOnFullDisk(t *testing.T) {
	disk := testfs.SmallDisk(t, "1m")
	err := os.WriteFile(filepath.Join(disk, "events.ndjson"), make([]byte, 2<<20), 0o644)
	if err == nil {
		t.Fatal("writing 2 MB to a 1 MB disk succeeded")
	}
	res := pathFailure("write events file", err)
	if res.Reason != jobspec.ReasonDiskFull || !res.Retryable {
		t.Errorf("result = %+v, want disk_full, retryable", res)
	}
	if !strings.Contains(res.Error, "no space left on device") || !strings.Contains(res.Error, "disk mounted at "+disk) {
		t.Errorf("error %q does not say no space left and which disk (%s)", res.Error, disk)
	}
}
