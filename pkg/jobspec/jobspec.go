// Package jobspec is the contract between the supervisor and the jobrunner:
// the versioned job Spec written to the jobrunner's stdin, and the Result it
// prints on stdout. Everything a job needs is in the Spec, so the same spec
// piped in by hand reproduces the job without a database or environment.
package jobspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/ade-org/ade-worker/pkg/sandbox"
)

// Version is the spec version this build writes and accepts.
const Version = 1

// MaxSpecBytes bounds how much the jobrunner reads from stdin; a spec is a few
// kilobytes, so anything near this is not a spec.
const MaxSpecBytes = 1 << 20

// Kind names what a job does.
type Kind string

// Job kinds.
const (
	KindBuild Kind = "build"
	KindRun   Kind = "run"
)

// MsgBuildEnvMissing is the error of a run whose build environment is gone
// (and, written by the supervisor, of its build). The ADE API and operators
// match on it.
const MsgBuildEnvMissing = "Build environment missing; rerun build"

// Spec is one job, fully resolved by the supervisor.
type Spec struct {
	Version int    `json:"version"`
	Kind    Kind   `json:"kind"`
	JobID   string `json:"job_id"`
	Attempt int    `json:"attempt"`

	WorkspaceID     string `json:"workspace_id"`
	ConfigurationID string `json:"configuration_id"`
	BuildID         string `json:"build_id,omitempty"`

	// EventsPath is the NDJSON events file the jobrunner appends to.
	EventsPath string `json:"events_path"`
	// Env is the complete environment given to every process the job starts
	// (pip, the engine). Nothing else of the supervisor's environment leaks in.
	Env map[string]string `json:"env,omitempty"`
	// TimeoutSeconds bounds the job's main work; 0 means no limit.
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`

	// Limits bound every process the job starts.
	Limits Limits `json:"limits,omitzero"`
	// Roots are the shared folders the paths below lie under; optional.
	Roots Roots `json:"roots,omitzero"`

	// Sandbox says how the job's processes are confined; absent (a spec
	// written by hand or before sandboxes) runs them unconfined.
	Sandbox *Sandbox `json:"sandbox,omitempty"`

	// Lease, when set, makes the jobrunner fence itself: it stops the job
	// when its supervisor has not renewed the job's lease in time. Absent
	// for a jobrunner started by hand, which then runs without one.
	Lease *Lease `json:"lease,omitempty"`

	Build *BuildSpec `json:"build,omitempty"`
	Run   *RunSpec   `json:"run,omitempty"`
}

// Lease tells the jobrunner how its supervisor's claim on the job is kept.
// The supervisor writes one line per successful renewal to file descriptor
// RenewalFD: the seconds the lease has left, measured by the supervisor
// from before it sent the renewal. The jobrunner stops the job once that
// time less MarginSeconds has passed on its own monotonic clock without a
// newer line, so its engine is dead before the lease can lapse and another
// supervisor claim the job.
type Lease struct {
	// RemainingSeconds is the lease left when the spec was written; it
	// holds until the first renewal line arrives.
	RemainingSeconds float64 `json:"remaining_seconds"`
	// MarginSeconds covers the renewal's trip to the jobrunner, stopping
	// the engine, and clock rate drift.
	MarginSeconds float64 `json:"margin_seconds"`
	// RenewalFD is the descriptor the renewal lines arrive on (3 when
	// the supervisor passes one extra file).
	RenewalFD int `json:"renewal_fd"`
	// Tag, when set, ends every renewal line meant for this job ("SECONDS
	// TAG"). A jobrunner serving one job after another on the same
	// descriptor (see the jobrunner's serve mode) ignores the lines of its
	// earlier jobs by it.
	Tag string `json:"tag,omitempty"`
}

// Sandbox is the confinement of a job's processes (package sandbox).
type Sandbox struct {
	Mode sandbox.Mode `json:"mode"`
	// BuildTCPPorts are the TCP ports a build's processes may connect to
	// (a package index; a proxy's port is added from the job's environment).
	BuildTCPPorts []uint16 `json:"build_tcp_ports,omitempty"`
	// Read are more files and folders every step may read (an operator's
	// wheelhouse or interpreter outside the system folders).
	Read []string `json:"read,omitempty"`
	// Write are more files and folders every step may write.
	Write []string `json:"write,omitempty"`
}

// Limits bound what one job may use; zero means no limit.
type Limits struct {
	MemoryMB  int `json:"memory_mb,omitempty"`  // resident memory of all the job's processes together (and address space per process)
	Processes int `json:"processes,omitempty"`  // processes and threads at once
	OpenFiles int `json:"open_files,omitempty"` // per process
	OutputMB  int `json:"output_mb,omitempty"`  // largest file written, and console output
}

// BuildSpec says how to make a build's virtual environment.
type BuildSpec struct {
	// VenvDir is the .venv folder to create.
	VenvDir string `json:"venv_dir"`
	// Python is the interpreter that creates the venv.
	Python string `json:"python"`
	// EngineSpec is a pip requirement or a local path for the ADE engine.
	EngineSpec string `json:"engine_spec"`
	// ConfigDir is the configuration package to install.
	ConfigDir string `json:"config_dir"`
	// Fingerprint identifies what is installed; recorded in the venv marker.
	Fingerprint string `json:"fingerprint,omitempty"`
	// UV, when set, is the uv binary that creates the venv and installs
	// into it instead of python -m venv and pip.
	UV string `json:"uv,omitempty"`
	// ReuseFrom lists environments of ready builds with the same
	// fingerprint; the first one that is intact is copied instead of
	// installing again.
	ReuseFrom []string `json:"reuse_from,omitempty"`
}

// RunSpec says how to process one document.
type RunSpec struct {
	VenvDir   string `json:"venv_dir"`
	ConfigDir string `json:"config_dir"`
	// RunDir holds input/, output/ and logs/.
	RunDir string `json:"run_dir"`
	// DocumentPath is the stored document; empty for validate_only and dry_run.
	DocumentPath string `json:"document_path,omitempty"`
	// InputName is the file name the document is staged as under input/.
	InputName string     `json:"input_name,omitempty"`
	Options   RunOptions `json:"options"`
	// Rebuild says how to remake the build's environment when it is
	// missing on this host; nil fails such a run instead.
	Rebuild *BuildSpec `json:"rebuild,omitempty"`
}

// RunOptions are the run's options as the ADE API stores them.
type RunOptions struct {
	LogLevel        string   `json:"log_level,omitempty"`
	InputSheetNames []string `json:"input_sheet_names,omitempty"`
	ActiveSheetOnly bool     `json:"active_sheet_only,omitempty"`
	ValidateOnly    bool     `json:"validate_only,omitempty"`
	DryRun          bool     `json:"dry_run,omitempty"`
}

// Decode reads one spec from r and validates it.
func Decode(r io.Reader) (*Spec, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSpecBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read job spec: %w", err)
	}
	if len(data) > MaxSpecBytes {
		return nil, fmt.Errorf("job spec is larger than %d bytes", MaxSpecBytes)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, errors.New("job spec is empty: pipe one JSON object on stdin or pass --job FILE")
	}
	var s Spec
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("job spec is not valid JSON: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Encode writes s as one JSON object.
func (s *Spec) Encode(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// EncodeLine writes s as one line of compact JSON, the framing of a
// jobrunner in serve mode (JSON never holds a raw newline).
func (s *Spec) EncodeLine(w io.Writer) error {
	return json.NewEncoder(w).Encode(s)
}

// Validate reports the first thing that makes s unusable.
func (s *Spec) Validate() error {
	if s.Version != Version {
		return fmt.Errorf("job spec version %d is not supported (this jobrunner speaks version %d)", s.Version, Version)
	}
	if s.JobID == "" {
		return errors.New("job spec has no job_id")
	}
	if s.EventsPath == "" || !filepath.IsAbs(s.EventsPath) {
		return fmt.Errorf("job spec events_path %q must be an absolute path", s.EventsPath)
	}
	if s.Limits.MemoryMB < 0 || s.Limits.Processes < 0 || s.Limits.OpenFiles < 0 || s.Limits.OutputMB < 0 {
		return errors.New("job spec limits must not be negative")
	}
	if s.TimeoutSeconds < 0 {
		return fmt.Errorf("job spec timeout_seconds %v is negative", s.TimeoutSeconds)
	}
	if err := s.validateRoots(); err != nil {
		return err
	}
	if sb := s.Sandbox; sb != nil {
		if _, err := sandbox.ParseMode(string(sb.Mode)); err != nil {
			return fmt.Errorf("job spec sandbox.mode: %v", err)
		}
		for _, p := range append(append([]string(nil), sb.Read...), sb.Write...) {
			if !filepath.IsAbs(p) {
				return fmt.Errorf("job spec sandbox paths must be absolute, and %q is not", p)
			}
		}
	}
	if l := s.Lease; l != nil && (l.RemainingSeconds < 0 || l.MarginSeconds < 0 || l.RenewalFD < 3) {
		return errors.New("job spec lease needs remaining_seconds and margin_seconds >= 0 and renewal_fd >= 3")
	}
	switch s.Kind {
	case KindBuild:
		if s.Build == nil || s.Run != nil {
			return errors.New(`job spec of kind "build" needs a "build" object and no "run"`)
		}
		return s.Build.validate()
	case KindRun:
		if s.Run == nil || s.Build != nil {
			return errors.New(`job spec of kind "run" needs a "run" object and no "build"`)
		}
		return s.Run.validate()
	default:
		return fmt.Errorf("job spec kind %q is unknown (want %q or %q)", s.Kind, KindBuild, KindRun)
	}
}

func (b *BuildSpec) validate() error {
	if err := absPaths(map[string]string{"build.venv_dir": b.VenvDir, "build.config_dir": b.ConfigDir}); err != nil {
		return err
	}
	if b.Python == "" {
		return errors.New("job spec build.python is empty")
	}
	if b.EngineSpec == "" {
		return errors.New("job spec build.engine_spec is empty")
	}
	return nil
}

func (r *RunSpec) validate() error {
	if err := absPaths(map[string]string{"run.venv_dir": r.VenvDir, "run.config_dir": r.ConfigDir, "run.run_dir": r.RunDir}); err != nil {
		return err
	}
	if r.Options.DryRun || r.Options.ValidateOnly {
		return nil
	}
	if r.DocumentPath == "" || !filepath.IsAbs(r.DocumentPath) {
		return fmt.Errorf("job spec run.document_path %q must be an absolute path", r.DocumentPath)
	}
	if r.InputName == "" || r.InputName != filepath.Base(r.InputName) || r.InputName == "." || r.InputName == ".." {
		return fmt.Errorf("job spec run.input_name %q must be a plain file name", r.InputName)
	}
	return nil
}

func absPaths(paths map[string]string) error {
	for name, p := range paths {
		if p == "" || !filepath.IsAbs(p) {
			return fmt.Errorf("job spec %s %q must be an absolute path", name, p)
		}
	}
	return nil
}

// Status is a job's outcome as the jobrunner saw it.
type Status string

// Job outcomes.
const (
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
)

// Reason classifies a failure so the supervisor can decide what to write.
type Reason string

// Failure reasons.
const (
	ReasonNone         Reason = ""
	ReasonEngineFailed Reason = "engine_failed" // the engine (or pip) exited non-zero
	ReasonTimeout      Reason = "timeout"       // the job hit TimeoutSeconds
	ReasonVenvMissing  Reason = "venv_missing"  // a run's build environment is gone
	ReasonBadInput     Reason = "bad_input"     // the job's own data is unusable
	ReasonBadSpec      Reason = "bad_spec"      // the spec itself is unusable
	ReasonEnvironment  Reason = "environment"   // a host fault; a retry may help
	ReasonCancelled    Reason = "cancelled"     // stopped on request (SIGTERM)
	ReasonLimit        Reason = "limit"         // the job exceeded one of its Limits
	ReasonLeaseLapsed  Reason = "lease_lapsed"  // the supervisor stopped renewing the lease
	ReasonDiskFull     Reason = "disk_full"     // a folder of the worker's was on a full disk
	// ReasonNoResult is the supervisor's: the jobrunner printed no result.
	ReasonNoResult Reason = "no_result"
)

// Exit codes of the jobrunner process.
const (
	ExitSucceeded   = 0
	ExitFailed      = 1
	ExitBadSpec     = 2
	ExitEnvironment = 3
)

// Exit codes recorded on jobs.
const (
	CodeTimeout        = 124
	CodeMissingBuild   = 2
	CodeGenericFailure = 1
)

// Result is what the jobrunner prints on stdout, one JSON object.
type Result struct {
	JobID  string `json:"job_id"`
	Kind   Kind   `json:"kind"`
	Status Status `json:"status"`
	// ExitCode is the code to record on the job (the engine's own, 124 for a
	// timeout, 2 for a missing build environment, 1 otherwise).
	ExitCode int    `json:"exit_code"`
	Reason   Reason `json:"reason,omitempty"`
	Error    string `json:"error,omitempty"`
	// Retryable says whether running the job again could help: its
	// reason's class (ClassOf) is transient.
	Retryable bool `json:"retryable,omitempty"`

	// Summary is the data of the engine's engine.run.completed event.
	Summary json.RawMessage `json:"summary,omitempty"`

	// Build facts.
	PythonVersion     string `json:"python_version,omitempty"`
	PythonInterpreter string `json:"python_interpreter,omitempty"`
	EngineVersion     string `json:"engine_version,omitempty"`
	BuildSummary      string `json:"build_summary,omitempty"`

	DurationSeconds float64 `json:"duration_seconds"`
}

// ProcessExit is the jobrunner exit code that goes with r.
func (r *Result) ProcessExit() int {
	switch {
	case r.Status == StatusSucceeded:
		return ExitSucceeded
	case r.Reason == ReasonBadSpec:
		return ExitBadSpec
	case r.Retryable:
		return ExitEnvironment
	default:
		return ExitFailed
	}
}

// DecodeResult parses the jobrunner's stdout.
func DecodeResult(data []byte) (*Result, error) {
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("jobrunner result is not valid JSON: %w", err)
	}
	if r.Status != StatusSucceeded && r.Status != StatusFailed {
		return nil, fmt.Errorf("jobrunner result has unknown status %q", r.Status)
	}
	return &r, nil
}
