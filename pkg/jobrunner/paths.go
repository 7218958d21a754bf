package jobrunner

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/safepath"
)

// Every path a job opens, creates or removes lies below one of the spec's
// roots and is resolved from it without following links (package
// safepath). A spec without a root protects only the last element.

// mkdirAll creates the folder path below root.
func mkdirAll(root, path string) error {
	r, rel, err := jobspec.Split(root, path)
	if err != nil {
		return err
	}
	return safepath.MkdirAll(r, rel, 0o755)
}

// removeAll removes path below root, never through a link.
func removeAll(root, path string) error {
	r, rel, err := jobspec.Split(root, path)
	if err != nil {
		return err
	}
	return safepath.RemoveAll(r, rel)
}

// checkFolder returns nil when path is a folder reached from root without
// any link; a link as the folder itself is refused like one above it.
func checkFolder(root, path string) error {
	r, rel, err := jobspec.Split(root, path)
	if err != nil {
		return err
	}
	info, err := safepath.Lstat(r, rel)
	switch {
	case err != nil:
		return err
	case info.Mode()&fs.ModeSymlink != 0:
		return &safepath.Error{Path: path, Elem: rel, Err: safepath.ErrSymlink}
	case !info.IsDir():
		return &safepath.Error{Path: path, Elem: rel, Err: safepath.ErrNotDir}
	}
	return nil
}

// refused reports whether err is certain: hostile or impossible input that
// no retry can fix (a link, a file where a folder must be, not a regular
// file, a path outside its root).
func refused(err error) bool {
	return safepath.Refused(err) || errors.Is(err, layout.ErrNotRegular)
}

// pathFailure turns an error about one of the job's paths into a result:
// certain refusals fail at once, other faults may be retried.
func pathFailure(what string, err error) *jobspec.Result {
	msg := fmt.Sprintf("%s: %v", what, err)
	if refused(err) {
		return failure(jobspec.ReasonBadInput, jobspec.CodeGenericFailure, msg)
	}
	var pe *fs.PathError
	if errors.Is(err, syscall.ENOSPC) && errors.As(err, &pe) {
		return failure(jobspec.ReasonDiskFull, jobspec.CodeGenericFailure, msg+" (disk mounted at "+mountPoint(existingParent(pe.Path))+")")
	}
	return failure(jobspec.ReasonEnvironment, jobspec.CodeGenericFailure, msg)
}

// configFailure checks the configuration package folder, or returns nil.
func configFailure(root, dir string) *jobspec.Result {
	err := checkFolder(root, dir)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return failure(jobspec.ReasonBadInput, jobspec.CodeGenericFailure, fmt.Sprintf("configuration package not found: %s", dir))
	}
	return pathFailure("configuration package", err)
}

// noSpace rewrites a failed result whose cause was a full disk so that it
// says so and where (the folder, its mount point), and, for a run, frees
// what the attempt wrote (its output and staged input) so the terminal
// event and the next attempt have room. A full disk is transient: a retry
// succeeds once space is freed. full is what the space watch saw (nil:
// no folder of the job's was full).
func (j *job) noSpace(res *jobspec.Result, full *fullDisk) *jobspec.Result {
	if res == nil || res.Status != jobspec.StatusFailed ||
		res.Reason != jobspec.ReasonEngineFailed && res.Reason != jobspec.ReasonEnvironment {
		return res // a refusal, timeout, limit or shutdown keeps its own meaning
	}
	var where []string
	if werr := j.log.WriteErr(); errors.Is(werr, syscall.ENOSPC) {
		where = append(where, "writing "+j.spec.EventsPath)
	} else if full == nil && mentionsNoSpace(res.Error) {
		// The disk was freed again between samples (the tool removed its
		// files): the folder of the file the tool names, else the one the
		// job writes most to.
		folders := jobFolders(j.spec)
		if full = diskOf(folders, pathOfNoSpace(res.Error)); full == nil {
			full = diskOf(folders, folders[0].path)
		}
		if full == nil {
			where = append(where, "under "+filepath.Dir(filepath.Dir(j.spec.EventsPath)))
		}
	}
	if full != nil {
		where = append(where, "("+full.String()+")")
	}
	if len(where) == 0 {
		return res
	}
	msg := "no space left on device " + strings.Join(where, " ")
	if j.spec.Run != nil {
		msg += "; " + j.cleanRun()
	}
	if !strings.Contains(strings.ToLower(res.Error), "no space left on device "+strings.ToLower(where[0])) {
		msg += " (" + res.Error + ")"
	}
	out := failure(jobspec.ReasonDiskFull, jobspec.CodeGenericFailure, msg)
	out.Summary = res.Summary
	return out
}

// pathOfNoSpace is the file a Python error names after "No space left on
// device: '", or "".
func pathOfNoSpace(s string) string {
	const mark = "No space left on device: '"
	i := strings.LastIndex(s, mark)
	if i < 0 {
		return ""
	}
	rest := s[i+len(mark):]
	if end := strings.IndexByte(rest, '\''); end > 0 {
		return rest[:end]
	}
	return ""
}

func mentionsNoSpace(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "no space left on device") || strings.Contains(s, "errno 28")
}

// cleanRun removes the run's output and staged input, says what it did.
func (j *job) cleanRun() string {
	r := j.spec.Run
	for _, sub := range []string{layout.InputName, layout.OutputName} {
		if err := removeAll(j.spec.Roots.Runs, filepath.Join(r.RunDir, sub)); err != nil {
			return fmt.Sprintf("could not remove the run's %s folder: %v", sub, err)
		}
	}
	return "the run's output and input folders were removed to free space"
}

// venvFailure refuses a build environment reached through a link below the
// venvs root (a missing one is left to the caller), or returns nil.
func venvFailure(root, venv string) *jobspec.Result {
	err := checkFolder(root, venv)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return pathFailure("build environment", err)
}

// ensureRunFolders empties and recreates the run's input and output
// folders (what an earlier attempt left there must not break this one)
// and creates its logs folder.
func (j *job) ensureRunFolders() *jobspec.Result {
	r := j.spec.Run
	for _, sub := range []string{layout.InputName, layout.OutputName} {
		if err := removeAll(j.spec.Roots.Runs, filepath.Join(r.RunDir, sub)); err != nil {
			return pathFailure("clean run folder", err)
		}
	}
	for _, sub := range []string{layout.InputName, layout.OutputName, "logs"} {
		if err := mkdirAll(j.spec.Roots.Runs, filepath.Join(r.RunDir, sub)); err != nil {
			return pathFailure("create run folder", err)
		}
	}
	return nil
}
