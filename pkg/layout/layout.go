// Package layout maps jobs to their files (configuration packages, stored
// documents, build environments, run folders) and stages a run's input.
//
// Ids, stored URIs and file names come from the database, which other
// programs write. Every one is checked before it becomes part of a path: a
// value that would leave its folder ("..", "/", NUL, an absolute path) is
// refused with an error, never followed.
package layout

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Names inside build and run folders.
const (
	VenvName   = ".venv"              // a build's virtual environment, in its BuildDir
	EventsFile = "logs/events.ndjson" // a job's event log, in its BuildDir or RunDir
	InputName  = "input"              // a run's staged input, in its RunDir
	OutputName = "output"             // a run's outputs, in its RunDir
)

// maxName is the longest file name most filesystems allow, in bytes.
const maxName = 255

// Layout holds the absolute roots of the worker's files.
type Layout struct {
	Configs   string // <configs>/<workspace>/config_packages/<configuration>
	Documents string // <documents>/<workspace>/documents/<stored_uri>
	Runs      string // <runs>/<workspace>/runs/<run>
	Venvs     string // <venvs>/<workspace>/<configuration>/<build>
}

// ConfigDir is a configuration package's folder.
func (l Layout) ConfigDir(workspaceID, configurationID string) (string, error) {
	if err := checkIDs(id{"workspace", workspaceID}, id{"configuration", configurationID}); err != nil {
		return "", err
	}
	return under("configs", l.Configs, workspaceID, "config_packages", configurationID)
}

// DocumentPath is a stored document's file. storedURI is relative to the
// workspace's documents folder and may name subfolders ("a/b.csv"), but it
// must stay inside that folder: no scheme, absolute path, "..", ".", empty
// element, NUL or backslash.
func (l Layout) DocumentPath(workspaceID, storedURI string) (string, error) {
	if err := checkIDs(id{"workspace", workspaceID}); err != nil {
		return "", err
	}
	if err := checkStoredURI(storedURI); err != nil {
		return "", err
	}
	return under("documents", l.Documents, workspaceID, "documents", filepath.FromSlash(storedURI))
}

// BuildDir is a build's folder; it holds VenvName and EventsFile.
func (l Layout) BuildDir(workspaceID, configurationID, buildID string) (string, error) {
	err := checkIDs(id{"workspace", workspaceID}, id{"configuration", configurationID}, id{"build", buildID})
	if err != nil {
		return "", err
	}
	return under("venvs", l.Venvs, workspaceID, configurationID, buildID)
}

// RunDir is a run's folder; it holds InputName, OutputName and EventsFile.
func (l Layout) RunDir(workspaceID, runID string) (string, error) {
	if err := checkIDs(id{"workspace", workspaceID}, id{"run", runID}); err != nil {
		return "", err
	}
	return under("runs", l.Runs, workspaceID, "runs", runID)
}

// VenvDir is the virtual environment in buildDir.
func VenvDir(buildDir string) string { return filepath.Join(buildDir, VenvName) }

// TempMark follows a venv's path in the names of the build's temporary
// folders beside it (<venv>.tmp-<pid>, the venv being made, and
// <venv>.tmp-<pid>-scratch, the build's TMPDIR): nothing a run uses; the
// next build of the folder, a cancel or the collector removes them.
const TempMark = ".tmp-"

// BuildTemps lists the temporary folders beside venv.
func BuildTemps(venv string) []string {
	found, _ := filepath.Glob(venv + TempMark + "*")
	return found
}

// EventsPath is the event log of the job whose folder is dir.
func EventsPath(dir string) string { return filepath.Join(dir, filepath.FromSlash(EventsFile)) }

// InputPath is where a run's input document is staged: input/<fileName> in
// runDir. fileName is the document's original file name.
func InputPath(runDir, fileName string) (string, error) {
	if err := CheckFileName(fileName); err != nil {
		return "", err
	}
	return filepath.Join(runDir, InputName, fileName), nil
}

// CheckID returns an error unless id can be used as one folder name. kind
// says what the id is ("run", "workspace", ...) for the error.
func CheckID(kind, id string) error {
	if why := badElement(id); why != "" {
		return fmt.Errorf("refusing %s id %q: an id must be a single folder name (%s)", kind, id, why)
	}
	return nil
}

// CheckFileName returns an error unless name is a plain file name, such as
// a document's original_filename.
func CheckFileName(name string) error {
	why := badElement(name)
	if why == "" && strings.TrimSpace(name) == "" {
		why = "it is blank"
	}
	if why != "" {
		return fmt.Errorf("refusing file name %q: a file name must be a plain name without folders (%s)", name, why)
	}
	return nil
}

// badElement says why s cannot be one path element, or returns "".
func badElement(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case s == "." || s == "..":
		return "it is " + s
	case len(s) > maxName:
		return fmt.Sprintf("it is longer than %d bytes", maxName)
	case strings.ContainsAny(s, `/\`):
		return `it contains "/" or "\"`
	case strings.ContainsFunc(s, isControl):
		return "it contains NUL or another control character"
	case !utf8.ValidString(s):
		return "it is not valid UTF-8"
	}
	return ""
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// checkStoredURI refuses a stored URI that could leave the documents folder.
func checkStoredURI(uri string) error {
	fail := func(why string) error {
		return fmt.Errorf("refusing document stored_uri %q: want a path relative to the workspace's documents folder (%s)", uri, why)
	}
	switch {
	case uri == "":
		return fail("it is empty")
	case strings.HasPrefix(uri, "/"):
		return fail("it is absolute")
	case hasScheme(uri):
		return fail("it has a scheme such as file:")
	}
	for _, elem := range strings.Split(uri, "/") {
		if why := badElement(elem); why != "" {
			return fail(fmt.Sprintf("%q: %s", elem, why))
		}
	}
	return nil
}

// hasScheme reports whether uri starts like "file:" or "s3:".
func hasScheme(uri string) bool {
	scheme, _, ok := strings.Cut(uri, ":")
	if !ok || scheme == "" || strings.Contains(scheme, "/") {
		return false
	}
	for i, r := range scheme {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return false
		}
	}
	return true
}

// id is an id read from the database, and what it identifies.
type id struct{ kind, value string }

func checkIDs(ids ...id) error {
	for _, i := range ids {
		if err := CheckID(i.kind, i.value); err != nil {
			return err
		}
	}
	return nil
}

// under joins root and elems, already checked, and makes sure, once more,
// that the result lies below root.
func under(rootName, root string, elems ...string) (string, error) {
	if !filepath.IsAbs(root) {
		return "", fmt.Errorf("layout: the %s root %q is not an absolute path", rootName, root)
	}
	p := filepath.Join(append([]string{root}, elems...)...)
	if rel, err := filepath.Rel(root, p); err != nil || rel == "." || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("layout: refusing path %q: it is not inside %q", p, root)
	}
	return p, nil
}
