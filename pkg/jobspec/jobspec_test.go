package jobspec

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func validRun() *Spec {
	return &Spec{
		Version: Version, Kind: KindRun, JobID: "run-1", Attempt: 2,
		WorkspaceID: "ws", ConfigurationID: "cfg", BuildID: "b1",
		EventsPath: "/data/runs/ws/runs/run-1/logs/events.ndjson",
		Env:        map[string]string{"PATH": "/usr/bin", "PIP_NO_INDEX": "1"}, TimeoutSeconds: 30,
		Roots: Roots{Documents: "/data/docs", Configs: "/data/cfg", Runs: "/data/runs", Venvs: "/data/venvs"},
		Run: &RunSpec{VenvDir: "/data/venvs/ws/cfg/b1/.venv", ConfigDir: "/data/cfg/ws/config_packages/cfg", RunDir: "/data/runs/ws/runs/run-1",
			DocumentPath: "/data/docs/ws/documents/doc.csv", InputName: "doc.csv",
			Options: RunOptions{LogLevel: "debug", InputSheetNames: []string{"A", "B"}, ActiveSheetOnly: true}},
	}
}

func validBuild() *Spec {
	return &Spec{
		Version: Version, Kind: KindBuild, JobID: "b1", Attempt: 1, WorkspaceID: "ws", ConfigurationID: "cfg", BuildID: "b1",
		EventsPath: "/v/logs/events.ndjson", TimeoutSeconds: 600,
		Build: &BuildSpec{VenvDir: "/v/.venv", Python: "/usr/bin/python3", EngineSpec: "ade-engine==1.0", ConfigDir: "/c", Fingerprint: "f"},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, spec := range []*Spec{validRun(), validBuild()} {
		var buf bytes.Buffer
		if err := spec.Encode(&buf); err != nil {
			t.Fatal(err)
		}
		got, err := Decode(&buf)
		if err != nil {
			t.Fatalf("Decode(Encode(%s)): %v", spec.Kind, err)
		}
		if !reflect.DeepEqual(got, spec) {
			t.Errorf("round trip changed the %s spec:\n got %+v\nwant %+v", spec.Kind, got, spec)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	mutate := func(f func(*Spec)) string {
		s := validRun()
		f(s)
		var buf bytes.Buffer
		_ = s.Encode(&buf)
		return buf.String()
	}
	tests := []struct {
		name, input, want string
	}{
		{"empty", "  \n", "job spec is empty"},
		{"not json", "{nope", "not valid JSON"},
		{"unknown field", `{"version":1,"surprise":true}`, "unknown field"},
		{"oversized", `{"version":1,"job_id":"` + strings.Repeat("x", MaxSpecBytes) + `"}`, "larger than"},
		{"unknown version", mutate(func(s *Spec) { s.Version = 99 }), "version 99 is not supported"},
		{"no job id", mutate(func(s *Spec) { s.JobID = "" }), "no job_id"},
		{"relative events", mutate(func(s *Spec) { s.EventsPath = "logs/x" }), "events_path"},
		{"negative timeout", mutate(func(s *Spec) { s.TimeoutSeconds = -1 }), "negative"},
		{"unknown kind", mutate(func(s *Spec) { s.Kind = "deploy" }), `kind "deploy" is unknown`},
		{"run without run", mutate(func(s *Spec) { s.Run = nil }), `needs a "run" object`},
		{"relative venv", mutate(func(s *Spec) { s.Run.VenvDir = "v" }), "run.venv_dir"},
		{"input name with slash", mutate(func(s *Spec) { s.Run.InputName = "../x.csv" }), "plain file name"},
		{"no document", mutate(func(s *Spec) { s.Run.DocumentPath = "" }), "document_path"},
		{"relative root", mutate(func(s *Spec) { s.Roots.Documents = "docs" }), "roots.documents"},
		{"document outside its root", mutate(func(s *Spec) { s.Run.DocumentPath = "/etc/passwd" }), `run.document_path: path "/etc/passwd" is not inside its root "/data/docs"`},
		{"run dir is the root", mutate(func(s *Spec) { s.Run.RunDir = "/data/runs" }), "run.run_dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestSpecWithoutRootsStillDecodes: roots are optional, so a spec written
// before they existed (or by hand) is still accepted.
func TestSpecWithoutRootsStillDecodes(t *testing.T) {
	old := `{"version":1,"kind":"run","job_id":"r","events_path":"/r/logs/events.ndjson",
	 "run":{"venv_dir":"/v/.venv","config_dir":"/c","run_dir":"/r","document_path":"/d/a.csv","input_name":"a.csv","options":{}}}`
	s, err := Decode(strings.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	if s.Roots != (Roots{}) {
		t.Fatalf("roots = %+v, want none", s.Roots)
	}
	root, rel, err := Split(s.Roots.Documents, s.Run.DocumentPath)
	if err != nil || root != "/d" || rel != "a.csv" {
		t.Fatalf("Split without a root = %q, %q, %v; want the file's folder", root, rel, err)
	}
}

func TestDryRunNeedsNoDocument(t *testing.T) {
	s := validRun()
	s.Run.DocumentPath, s.Run.InputName = "", ""
	s.Run.Options = RunOptions{DryRun: true}
	if err := s.Validate(); err != nil {
		t.Errorf("dry run spec: %v", err)
	}
}

func TestResultExitCodes(t *testing.T) {
	tests := []struct {
		r    Result
		want int
	}{
		{Result{Status: StatusSucceeded}, ExitSucceeded},
		{Result{Status: StatusFailed, Reason: ReasonEngineFailed}, ExitFailed},
		{Result{Status: StatusFailed, Reason: ReasonBadSpec}, ExitBadSpec},
		{Result{Status: StatusFailed, Reason: ReasonEnvironment, Retryable: true}, ExitEnvironment},
	}
	for _, tt := range tests {
		if got := tt.r.ProcessExit(); got != tt.want {
			t.Errorf("%+v.ProcessExit() = %d, want %d", tt.r, got, tt.want)
		}
	}
	if _, err := DecodeResult([]byte(`{"status":"maybe"}`)); err == nil {
		t.Error("DecodeResult accepted an unknown status")
	}
}
