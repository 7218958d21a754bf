package supervisor

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
)

// Planner turns claimed rows into job specs. It is shared by the worker loop
// and `supervisor job-spec`, so a spec printed for debugging is exactly the
// one the worker would send.
type Planner struct {
	Settings *settings.Settings
	Store    *store.Store
}

// Layout is the file layout the settings describe.
func (p *Planner) Layout() layout.Layout {
	s := p.Settings
	return layout.Layout{Configs: s.ConfigsDir, Documents: s.DocumentsDir, Runs: s.RunsDir, Venvs: s.VenvsDir}
}

// Roots are the shared folders of the settings, for the jobrunner to
// resolve every path from without following links.
func (p *Planner) Roots() jobspec.Roots {
	s := p.Settings
	return jobspec.Roots{Documents: s.DocumentsDir, Configs: s.ConfigsDir, Runs: s.RunsDir, Venvs: s.VenvsDir}
}

// Rejection is a job that cannot run because of its own data. It is failed
// at once with Code and Message, never retried.
type Rejection struct {
	Code    int
	Message string
}

func (r *Rejection) Error() string { return r.Message }

func reject(code int, format string, args ...any) *Rejection {
	return &Rejection{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Plan is a job (run or build) ready to hand to a jobrunner, or the reason
// it cannot run.
type Plan struct {
	// Spec is what the jobrunner is told; it may be partial (or nil for a
	// build) when the job is rejected.
	Spec *jobspec.Spec
	// Reject, when set, fails the job before any process starts.
	Reject *Rejection
	// DocumentID is set for runs that process their document (not dry_run or
	// validate_only): its status follows the run.
	DocumentID string
	// BuildID is a run's build, for failing it when its venv is gone.
	BuildID string
}

// PlanRun resolves everything a run needs. An error is a database problem;
// problems with the run's own data come back as plan.Reject.
func (p *Planner) PlanRun(ctx context.Context, r *store.ClaimedRun) (*Plan, error) {
	lay := p.Layout()
	plan := &Plan{}
	runDir, err := lay.RunDir(r.WorkspaceID, r.ID)
	if err != nil {
		plan.Reject = reject(jobspec.CodeGenericFailure, "%v", err)
		return plan, nil
	}
	opts, err := parseRunOptions(r.RunOptions.String, r.InputSheetNames.String)
	if err != nil {
		plan.Reject = reject(jobspec.CodeGenericFailure, "%v", err)
		return plan, nil
	}
	spec := &jobspec.Spec{
		Version: jobspec.Version, Kind: jobspec.KindRun, JobID: r.ID, Attempt: r.AttemptCount,
		WorkspaceID: r.WorkspaceID, ConfigurationID: r.ConfigurationID,
		EventsPath: layout.EventsPath(runDir),
		Env:        p.Settings.ChildEnv(),
		Limits:     p.limits(),
		Roots:      p.Roots(),
		Sandbox:    p.sandbox(),
		Run:        &jobspec.RunSpec{RunDir: runDir, Options: opts},
	}
	plan.Spec = spec
	if !r.BuildID.Valid || r.BuildID.String == "" {
		plan.Reject = reject(jobspec.CodeMissingBuild, "%s", store.MsgBuildRequired)
		return plan, nil
	}
	spec.BuildID, plan.BuildID = r.BuildID.String, r.BuildID.String
	rc, err := p.Store.LoadRunContext(ctx, r)
	if err != nil {
		return nil, err
	}
	if plan.Reject = checkRunRows(r, rc, opts); plan.Reject != nil {
		return plan, nil
	}
	if opts.DryRun {
		return plan, nil
	}
	buildDir, err := lay.BuildDir(rc.Build.WorkspaceID, rc.Build.ConfigurationID, rc.Build.ID)
	if err != nil {
		plan.Reject = reject(jobspec.CodeGenericFailure, "%v", err)
		return plan, nil
	}
	spec.Run.VenvDir = layout.VenvDir(buildDir)
	if spec.Run.ConfigDir, err = lay.ConfigDir(r.WorkspaceID, r.ConfigurationID); err != nil {
		plan.Reject = reject(jobspec.CodeGenericFailure, "%v", err)
		return plan, nil
	}
	spec.Run.Rebuild = &jobspec.BuildSpec{
		VenvDir: spec.Run.VenvDir, Python: p.Settings.Python, EngineSpec: p.engineSpec(rc.Build.EngineSpec),
		ConfigDir: spec.Run.ConfigDir, Fingerprint: rc.Build.Fingerprint, UV: p.uv(),
	}
	if opts.ValidateOnly {
		spec.TimeoutSeconds = p.Settings.BuildTimeout.Seconds()
		return plan, nil
	}
	spec.TimeoutSeconds = p.Settings.RunTimeout.Seconds()
	doc := rc.Document
	if err := layout.CheckFileName(doc.OriginalFilename); err != nil {
		plan.Reject = reject(jobspec.CodeGenericFailure, "document %s: %v", doc.ID, err)
		return plan, nil
	}
	if spec.Run.DocumentPath, err = lay.DocumentPath(doc.WorkspaceID, doc.StoredURI); err != nil {
		plan.Reject = reject(jobspec.CodeGenericFailure, "document %s: %v", doc.ID, err)
		return plan, nil
	}
	spec.Run.InputName = doc.OriginalFilename
	plan.DocumentID = doc.ID
	return plan, nil
}

// checkRunRows rejects a run whose build, configuration or document rows are
// missing or unusable.
func checkRunRows(r *store.ClaimedRun, rc *store.RunContext, opts jobspec.RunOptions) *Rejection {
	switch {
	case rc.Build == nil:
		return reject(jobspec.CodeMissingBuild, "%s (build %s does not exist)", store.MsgBuildRequired, r.BuildID.String)
	case rc.Build.Status != store.StatusReady:
		return reject(jobspec.CodeMissingBuild, "%s (build %s is %s)", store.MsgBuildRequired, rc.Build.ID, rc.Build.Status)
	case rc.Build.ConfigurationID != r.ConfigurationID:
		return reject(jobspec.CodeGenericFailure, "build %s belongs to configuration %s, not to the run's configuration %s",
			rc.Build.ID, rc.Build.ConfigurationID, r.ConfigurationID)
	case opts.DryRun:
		return nil
	case rc.Configuration == nil:
		return reject(jobspec.CodeGenericFailure, "configuration %s does not exist", r.ConfigurationID)
	case opts.ValidateOnly:
		return nil
	case rc.Document == nil:
		return reject(jobspec.CodeGenericFailure, "input document %s does not exist", r.InputDocumentID)
	case rc.Document.WorkspaceID != r.WorkspaceID:
		return reject(jobspec.CodeGenericFailure, "input document %s belongs to another workspace", r.InputDocumentID)
	}
	return nil
}

// parseRunOptions reads the run_options and input_sheet_names columns.
func parseRunOptions(raw, sheets string) (jobspec.RunOptions, error) {
	var opts jobspec.RunOptions
	if strings.TrimSpace(raw) != "" && strings.TrimSpace(raw) != "null" {
		var o struct {
			LogLevel        *string  `json:"log_level"`
			InputSheetNames []string `json:"input_sheet_names"`
			ActiveSheetOnly *bool    `json:"active_sheet_only"`
			ValidateOnly    *bool    `json:"validate_only"`
			DryRun          *bool    `json:"dry_run"`
		}
		if err := json.Unmarshal([]byte(raw), &o); err != nil {
			return opts, fmt.Errorf("invalid run_options JSON %q: %v", truncate(raw, 200), err)
		}
		opts = jobspec.RunOptions{LogLevel: deref(o.LogLevel), InputSheetNames: o.InputSheetNames,
			ActiveSheetOnly: derefBool(o.ActiveSheetOnly), ValidateOnly: derefBool(o.ValidateOnly), DryRun: derefBool(o.DryRun)}
	}
	if strings.TrimSpace(sheets) != "" && strings.TrimSpace(sheets) != "null" {
		var names []string
		if err := json.Unmarshal([]byte(sheets), &names); err != nil {
			return opts, fmt.Errorf("invalid input_sheet_names JSON %q: want a list of sheet names", truncate(sheets, 200))
		}
		if len(names) > 0 {
			opts.InputSheetNames = names
		}
	}
	switch strings.ToLower(opts.LogLevel) {
	case "", "debug", "info", "warning", "error", "critical":
		opts.LogLevel = strings.ToLower(opts.LogLevel)
	default:
		return opts, fmt.Errorf("invalid run_options log_level %q: want debug, info, warning, error or critical", opts.LogLevel)
	}
	return opts, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func derefBool(b *bool) bool { return b != nil && *b }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// PlanBuild resolves everything a build needs. An error is a database
// problem; problems with the build's own data come back as plan.Reject.
func (p *Planner) PlanBuild(ctx context.Context, b *store.ClaimedBuild) (*Plan, error) {
	lay := p.Layout()
	buildDir, err := lay.BuildDir(b.WorkspaceID, b.ConfigurationID, b.ID)
	if err != nil {
		return &Plan{Reject: reject(jobspec.CodeGenericFailure, "%v", err)}, nil
	}
	configDir, err := lay.ConfigDir(b.WorkspaceID, b.ConfigurationID)
	if err != nil {
		return &Plan{Reject: reject(jobspec.CodeGenericFailure, "%v", err)}, nil
	}
	twins, err := p.Store.ReadyBuildsLike(ctx, b.Fingerprint, b.ID)
	if err != nil {
		return nil, err
	}
	var reuse []string
	for _, t := range twins {
		if dir, err := lay.BuildDir(t.WorkspaceID, t.ConfigurationID, t.ID); err == nil {
			reuse = append(reuse, layout.VenvDir(dir))
		}
	}
	return &Plan{Spec: &jobspec.Spec{
		Version: jobspec.Version, Kind: jobspec.KindBuild, JobID: b.ID, Attempt: b.AttemptCount,
		WorkspaceID: b.WorkspaceID, ConfigurationID: b.ConfigurationID, BuildID: b.ID,
		EventsPath:     layout.EventsPath(buildDir),
		Env:            p.Settings.ChildEnv(),
		Limits:         p.limits(),
		Roots:          p.Roots(),
		Sandbox:        p.sandbox(),
		TimeoutSeconds: p.Settings.BuildTimeout.Seconds(),
		Build: &jobspec.BuildSpec{
			VenvDir: layout.VenvDir(buildDir), Python: p.Settings.Python,
			EngineSpec: p.engineSpec(b.EngineSpec), ConfigDir: configDir, Fingerprint: b.Fingerprint,
			ReuseFrom: reuse, UV: p.uv(),
		},
	}}, nil
}

// engineSpec is the build row's engine spec when it has one, else the
// worker's ADE_ENGINE_SPEC.
func (p *Planner) engineSpec(row sql.NullString) string {
	if row.Valid && strings.TrimSpace(row.String) != "" {
		return settings.ResolveEngineSpec(strings.TrimSpace(row.String))
	}
	return p.Settings.EngineSpec
}

// uv is the uv binary builds use, or "" for pip.
func (p *Planner) uv() string {
	if p.Settings.Installer == "pip" {
		return ""
	}
	return p.Settings.Installer
}

// limits are the per-job limits of the settings.
func (p *Planner) limits() jobspec.Limits {
	s := p.Settings
	return jobspec.Limits{MemoryMB: s.JobMemoryMB, Processes: s.JobMaxProcesses, OpenFiles: s.JobMaxOpenFiles, OutputMB: s.JobMaxOutputMB}
}

// sandbox is the confinement of every job's processes.
func (p *Planner) sandbox() *jobspec.Sandbox {
	s := p.Settings
	if s.Sandbox == "" {
		return nil // settings made in code without one (tests): unconfined
	}
	return &jobspec.Sandbox{Mode: s.Sandbox, BuildTCPPorts: s.BuildTCPPorts, Read: s.SandboxRead, Write: s.SandboxWrite}
}
