package jobrunner

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/sandbox"
)

// The job's processes run in a sandbox (package sandbox) whose rules are
// computed here, step by step, from the spec: what each step may read and
// write follows from the paths the supervisor resolved.

// confined reports whether the job's processes run in a sandbox.
func (j *job) confined() bool {
	return j.spec.Sandbox != nil && j.spec.Sandbox.Mode != sandbox.Off && j.spec.Sandbox.Mode != ""
}

// scratchPlace is the job's private temporary folder and the root it lies
// under: the run's tmp folder, or one beside the build's venv (a leftover
// of a killed build is removed with its other temporary folders, see
// layout.TempMark).
func (j *job) scratchPlace() (root, dir string) {
	if r := j.spec.Run; r != nil {
		return j.spec.Roots.Runs, filepath.Join(r.RunDir, "tmp")
	}
	return j.spec.Roots.Venvs, fmt.Sprintf("%s%s%d-scratch", j.spec.Build.VenvDir, layout.TempMark, os.Getpid())
}

// openScratch creates the job's private temporary folder (TMPDIR, and what
// the job has instead of /dev/shm); closeScratch removes it when the job
// ends, whatever the job left inside.
func (j *job) openScratch() *jobspec.Result {
	root, dir := j.scratchPlace()
	_ = removeAll(root, dir) // an earlier attempt's
	if err := mkdirAll(root, dir); err != nil {
		return pathFailure("create the job's temporary folder", err)
	}
	j.scratch = dir
	return nil
}

func (j *job) closeScratch() {
	if j.scratch != "" {
		root, _ := j.scratchPlace()
		_ = removeAll(root, j.scratch)
	}
}

// stepEnv is a step's environment: the spec's, with the job's temporary
// folder, and, when confined, that folder as HOME too (the real one is out
// of the sandbox's reach; pip and Python look there for settings).
func (j *job) stepEnv(env map[string]string) map[string]string {
	out := maps.Clone(env)
	if out == nil {
		out = map[string]string{}
	}
	if j.scratch != "" {
		out["TMPDIR"], out["TEMP"], out["TMP"] = j.scratch, j.scratch, j.scratch
		if j.confined() {
			out["HOME"] = j.scratch
		}
	}
	return out
}

// basePolicy is what every step of the job may reach.
func (j *job) basePolicy() *sandbox.Policy {
	sb := j.spec.Sandbox
	p := &sandbox.Policy{Mode: sb.Mode}
	p.Read = append(append(p.Read, sandbox.SystemRead...), sb.Read...)
	p.Write = append(append(p.Write, sandbox.SystemWrite...), sb.Write...)
	if j.scratch != "" {
		p.Write = append(p.Write, j.scratch)
	}
	return p
}

// enginePolicy confines a run's engine: it reads its venv, package and
// staged input, writes its output and logs folders, and has no TCP. The
// Python installation it may read is the operator's interpreter (the one
// builds use), never one the venv names: its pyvenv.cfg and bin/python
// were written by a build, where the package's install code runs, and a
// "home" it planted there would otherwise grant its runs any folder.
func (j *job) enginePolicy(input string) *sandbox.Policy {
	if !j.confined() {
		return nil
	}
	r := j.spec.Run
	p := j.basePolicy()
	p.Read = append(p.Read, r.VenvDir, r.ConfigDir)
	python := "python3" // a hand-written spec without the build's settings
	if r.Rebuild != nil && r.Rebuild.Python != "" {
		python = r.Rebuild.Python
	}
	p.Read = append(p.Read, interpreterHome(python, j.spec.Env["PATH"])...)
	if input != "" {
		p.Read = append(p.Read, input)
		p.Write = append(p.Write, filepath.Join(r.RunDir, layout.OutputName), filepath.Join(r.RunDir, "logs"))
	}
	return p
}

// buildPolicy confines one step of a build into venv: it reads the
// interpreter, the engine (when a local path) and the package, writes venv
// (when writable) and pip's cache, and connects only to the package
// index's ports.
func (j *job) buildPolicy(b *jobspec.BuildSpec, venv string, writable bool) *sandbox.Policy {
	if !j.confined() {
		return nil
	}
	env := j.spec.Env
	p := j.basePolicy()
	p.Read = append(p.Read, b.ConfigDir)
	p.Read = append(p.Read, interpreterHome(b.Python, env["PATH"])...)
	p.Read = append(p.Read, localPaths(b.EngineSpec)...)
	if b.UV != "" {
		p.Read = append(p.Read, interpreterHome(b.UV, env["PATH"])...)
	}
	for _, name := range []string{"PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_REQUIREMENT",
		"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "PIP_CERT"} {
		p.Read = append(p.Read, localPaths(env[name])...)
	}
	for _, name := range cacheNames { // the workspace's own (workspaceCaches)
		if dir := env[name]; filepath.IsAbs(dir) && ownCacheFolder(dir) == nil {
			p.Write = append(p.Write, dir)
		}
	}
	if writable {
		p.Write = append(p.Write, venv)
	} else {
		p.Read = append(p.Read, venv)
	}
	p.Links = true     // a venv's bin/python is one
	p.Datagrams = true // DNS, for the package index's name
	p.ConnectTCP = append(p.ConnectTCP, j.spec.Sandbox.BuildTCPPorts...)
	p.ConnectTCP = append(p.ConnectTCP, proxyPorts(env)...)
	return p
}

// interpreterHome is the installation a program belongs to: the folder
// above the one holding it, links resolved (/usr for /usr/bin/python3,
// ~/.pyenv for a pyenv shim). A name without a slash is looked up on path.
func interpreterHome(program, path string) []string {
	if !strings.Contains(program, "/") {
		found := ""
		for _, dir := range filepath.SplitList(path) {
			if cand := filepath.Join(dir, program); isExecutable(cand) {
				found = cand
				break
			}
		}
		if found == "" {
			if p, err := exec.LookPath(program); err == nil {
				found = p
			}
		}
		program = found
	}
	if program == "" {
		return nil
	}
	out := []string{filepath.Dir(filepath.Dir(program))}
	if real, err := filepath.EvalSymlinks(program); err == nil {
		out = append(out, filepath.Dir(filepath.Dir(real)))
	}
	return out
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// localPaths picks the local files and folders out of a pip setting or
// requirement: absolute paths and file: URLs, space separated.
func localPaths(value string) []string {
	var out []string
	for _, f := range strings.Fields(value) {
		if u, err := url.Parse(f); err == nil && u.Scheme == "file" {
			f = u.Path
		}
		f, _, _ = strings.Cut(f, "[") // an extra: /src/engine[fast]
		if filepath.IsAbs(f) {
			out = append(out, filepath.Clean(f))
		}
	}
	return out
}

// proxyPorts are the ports of the proxies a build's environment names.
func proxyPorts(env map[string]string) []uint16 {
	var out []uint16
	for _, name := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "PIP_PROXY"} {
		v := env[name]
		if v == "" {
			continue
		}
		if !strings.Contains(v, "://") {
			v = "http://" + v
		}
		u, err := url.Parse(v)
		if err != nil {
			continue
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"https": "443"}[u.Scheme]
			if port == "" {
				port = "80"
			}
		}
		if n, err := strconv.ParseUint(port, 10, 16); err == nil {
			out = append(out, uint16(n))
		}
	}
	return out
}
