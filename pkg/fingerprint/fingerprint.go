// Package fingerprint computes a build's fingerprint the way the ADE API
// does: two builds with the same fingerprint install the same things, so a
// ready one's environment may serve the other (see jobspec.BuildSpec
// ReuseFrom). `supervisor enqueue build` uses it to insert builds the API
// would recognise as the same.
package fingerprint

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Build is the fingerprint of a build of the configuration package whose
// Config digest is configDigest, with engine spec engineSpec and the Python
// interpreter python: a hex SHA-256 of the three.
func Build(engineSpec, configDigest, python string) string {
	sum := sha256.Sum256([]byte("engine=" + engineSpec + "\nconfig=" + configDigest + "\npython=" + python))
	return hex.EncodeToString(sum[:])
}

// Config digests a configuration package folder: "sha256:" and the hash of
// every regular file's slash-separated relative path, length and contents,
// in path order, leaving out what Skip names.
func Config(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if Skip(d.Name()) && path != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(rel), len(data))
		h.Write(data)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// Skip reports whether a file or folder of a configuration package is left
// out of its digest (and of copies of it): caches, virtual environments,
// version control and build metadata, which do not change what is installed.
func Skip(name string) bool {
	return name == "__pycache__" || name == ".venv" || name == ".git" || strings.HasSuffix(name, ".pyc") || strings.HasSuffix(name, ".egg-info")
}
