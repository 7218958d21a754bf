package jobspec

import (
	"fmt"
	"path/filepath"
)

// Roots are the shared folders a job's paths lie under. The jobrunner
// resolves each path from its root one element at a time and refuses a
// symbolic link anywhere below the root (package safepath): the roots are
// shared with other programs, and a planted link must not let a job read
// or write outside them. Every field is optional; a spec without a root
// (written before roots existed) protects only the last element of its
// paths.
type Roots struct {
	Documents string `json:"documents,omitempty"`
	Configs   string `json:"configs,omitempty"`
	Runs      string `json:"runs,omitempty"`
	Venvs     string `json:"venvs,omitempty"`
}

// Split returns the root to walk from and path relative to it: root when
// it is set (path must lie below it), else path's own folder.
func Split(root, path string) (string, string, error) {
	if root == "" {
		return filepath.Dir(path), filepath.Base(path), nil
	}
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." || !filepath.IsLocal(rel) {
		return "", "", fmt.Errorf("path %q is not inside its root %q", path, root)
	}
	return root, rel, nil
}

// EventsRoot is the root of the job's events file: the runs root for a
// run, the venvs root for a build.
func (s *Spec) EventsRoot() string {
	if s.Kind == KindBuild {
		return s.Roots.Venvs
	}
	return s.Roots.Runs
}

// validate checks that every set root is absolute and holds its paths.
func (s *Spec) validateRoots() error {
	r := s.Roots
	for name, root := range map[string]string{"documents": r.Documents, "configs": r.Configs, "runs": r.Runs, "venvs": r.Venvs} {
		if root != "" && !filepath.IsAbs(root) {
			return fmt.Errorf("job spec roots.%s %q must be an absolute path", name, root)
		}
	}
	check := map[string][2]string{"events_path": {s.EventsRoot(), s.EventsPath}}
	if b := s.Build; b != nil {
		check["build.venv_dir"] = [2]string{r.Venvs, b.VenvDir}
		check["build.config_dir"] = [2]string{r.Configs, b.ConfigDir}
	}
	if run := s.Run; run != nil {
		check["run.run_dir"] = [2]string{r.Runs, run.RunDir}
		check["run.venv_dir"] = [2]string{r.Venvs, run.VenvDir}
		check["run.config_dir"] = [2]string{r.Configs, run.ConfigDir}
		check["run.document_path"] = [2]string{r.Documents, run.DocumentPath}
	}
	for name, rp := range check {
		if rp[0] == "" || rp[1] == "" {
			continue
		}
		if _, _, err := Split(rp[0], rp[1]); err != nil {
			return fmt.Errorf("job spec %s: %v", name, err)
		}
	}
	return nil
}
