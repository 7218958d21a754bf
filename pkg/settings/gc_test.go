package settings

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRetentionSettings(t *testing.T) {
	tests := []struct {
		env                  map[string]string
		interval, runs, venv time.Duration
	}{
		{env: nil, interval: time.Hour, runs: 30 * 24 * time.Hour, venv: 30 * 24 * time.Hour},
		{env: map[string]string{"ADE_WORKER_GC_INTERVAL": "0", "ADE_WORKER_RUN_ARTIFACT_TTL_DAYS": "0", "ADE_WORKER_VENV_TTL_DAYS": "0"}},
		{env: map[string]string{"ADE_WORKER_GC_INTERVAL": "0.5", "ADE_WORKER_RUN_ARTIFACT_TTL_DAYS": "7", "ADE_WORKER_VENV_TTL_DAYS": "0.25"},
			interval: 500 * time.Millisecond, runs: 7 * 24 * time.Hour, venv: 6 * time.Hour},
	}
	for _, tt := range tests {
		s, err := load(t, tt.env)
		if err != nil {
			t.Fatalf("%v: %v", tt.env, err)
		}
		if s.GCInterval != tt.interval || s.RunArtifactTTL != tt.runs || s.VenvTTL != tt.venv {
			t.Errorf("%v: got interval %v, run TTL %v, venv TTL %v; want %v, %v, %v",
				tt.env, s.GCInterval, s.RunArtifactTTL, s.VenvTTL, tt.interval, tt.runs, tt.venv)
		}
	}
}

func TestRetentionBadValues(t *testing.T) {
	for _, tt := range []struct{ env, value string }{
		{"ADE_WORKER_GC_INTERVAL", "-1"}, {"ADE_WORKER_GC_INTERVAL", "hourly"},
		{"ADE_WORKER_RUN_ARTIFACT_TTL_DAYS", "-1"}, {"ADE_WORKER_RUN_ARTIFACT_TTL_DAYS", "30d"},
		{"ADE_WORKER_VENV_TTL_DAYS", "NaN"}, {"ADE_WORKER_VENV_TTL_DAYS", "1e300"},
	} {
		_, err := load(t, map[string]string{tt.env: tt.value})
		var se *Error
		if !errors.As(err, &se) || se.Var != tt.env || !strings.Contains(err.Error(), "want") {
			t.Errorf("%s=%q: got %v, want an error naming %s and what is wanted", tt.env, tt.value, err, tt.env)
		}
	}
}
