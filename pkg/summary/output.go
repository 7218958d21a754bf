package summary

import (
	"os"
	"path/filepath"
	"strings"
)

// RelativeOutputPath returns the engine's output path (absolute, or relative
// to runDir) relative to runDir, and true, only when it names an existing
// regular file inside runDir. Symbolic links are resolved on both sides, so
// a link that leads out of runDir is refused; so are ".." escapes, missing
// files and folders. The path returned is the one the engine gave, cleaned,
// when that lies inside runDir, else the resolved file's.
func RelativeOutputPath(runDir, path string) (string, bool) {
	if runDir == "" || path == "" || strings.ContainsRune(path, 0) || strings.ContainsRune(runDir, 0) {
		return "", false
	}
	root, err := filepath.Abs(runDir)
	if err != nil {
		return "", false
	}
	given := path
	if !filepath.IsAbs(given) {
		given = filepath.Join(root, given)
	}
	given = filepath.Clean(given)

	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", false
	}
	realFile, err := filepath.EvalSymlinks(given)
	if err != nil {
		return "", false
	}
	realRel, ok := inside(realRoot, realFile)
	if !ok {
		return "", false
	}
	if st, err := os.Stat(realFile); err != nil || !st.Mode().IsRegular() {
		return "", false
	}
	if rel, ok := inside(root, given); ok {
		return rel, true
	}
	return realRel, true
}

// inside returns path relative to dir when it lies below dir.
func inside(dir, path string) (string, bool) {
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", false
	}
	return rel, true
}
