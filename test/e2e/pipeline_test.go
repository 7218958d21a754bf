package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/eventfile"
)

// TestBuildAndRuns is the main path: a build goes queued -> ready with a real
// venv, then runs succeed with metrics, fields, columns, output path, events
// and document changes exactly as the engine reported them.
func TestBuildAndRuns(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, build := worldWithBuild(t, backend, nil)
		doc := w.addDocument("contacts.csv", csv("noise=3"))
		run := w.addRun(cfg, doc)
		w.start()

		b := w.waitForStatus("builds", []string{build}, 3*time.Minute)[build]
		if b.Status != "ready" || b.ExitCode == nil || *b.ExitCode != 0 {
			t.Fatalf("build = %+v (%s), want ready with exit 0", b, b.errText())
		}
		var facts struct {
			PythonVersion, EngineVersion, PythonInterpreter, Summary string
			ActiveBuildID, ActiveBuildFingerprint, Fingerprint       string
		}
		w.query(&facts, `SELECT b.python_version, b.engine_version, b.python_interpreter, b.summary, b.fingerprint,
			c.active_build_id, c.active_build_fingerprint FROM builds b JOIN configurations c ON c.id = b.configuration_id WHERE b.id = ?`, build)
		if facts.EngineVersion != "0.0.1" || !strings.HasPrefix(facts.PythonVersion, "3.") || facts.Summary == "" {
			t.Errorf("build facts = %+v", facts)
		}
		venv := filepath.Join(w.buildDir(cfg, build), ".venv")
		if facts.PythonInterpreter != filepath.Join(venv, "bin", "python") {
			t.Errorf("python_interpreter = %q, want %q", facts.PythonInterpreter, filepath.Join(venv, "bin", "python"))
		}
		if _, err := os.Stat(filepath.Join(venv, "ade-build.json")); err != nil {
			t.Errorf("ready venv has no marker: %v", err)
		}
		if facts.ActiveBuildID != build || facts.ActiveBuildFingerprint != facts.Fingerprint {
			t.Errorf("configuration active build = %q/%q, want %q/%q", facts.ActiveBuildID, facts.ActiveBuildFingerprint, build, facts.Fingerprint)
		}
		buildEvents := readEventsEndingWith(t, filepath.Join(w.buildDir(cfg, build), "logs", "events.ndjson"), "build.complete")
		assertFirstLast(t, buildEvents, "build.start", "build.complete")
		if d := data(buildEvents[len(buildEvents)-1]); d["status"] != "ready" || d["exit_code"] != float64(0) {
			t.Errorf("build.complete data = %v", d)
		}

		r := w.waitForStatus("runs", []string{run}, time.Minute)[run]
		if r.Status != "succeeded" || r.ExitCode == nil || *r.ExitCode != 0 || r.ErrorMessage != nil {
			t.Fatalf("run = %+v (%s), want succeeded with exit 0", r, r.errText())
		}
		events := w.finishedRunEvents(t, run)
		if d := data(events[len(events)-1]); d["status"] != "succeeded" || d["exit_code"] != float64(0) {
			t.Errorf("run.complete data = %v", d)
		}
		completed := findEvent(t, events, "engine.run.completed")
		for key, want := range map[string]string{"jobId": run, "workspaceId": w.ws, "configurationId": cfg, "buildId": build} {
			if got := data(completed)[key]; got != want {
				t.Errorf("engine event data.%s = %v, want %q", key, got, want)
			}
		}
		assertConsoleLines(t, events)
		assertResultsMatchSummary(t, w, run, data(completed))

		var outputPath string
		w.query(&outputPath, `SELECT output_path FROM runs WHERE id = ?`, run)
		if outputPath != "output/normalized.csv" {
			t.Errorf("output_path = %q, want output/normalized.csv", outputPath)
		}
		if _, err := os.Stat(filepath.Join(w.runDir(run), outputPath)); err != nil {
			t.Errorf("output file: %v", err)
		}
		staged, _ := os.ReadFile(filepath.Join(w.runDir(run), "input", "contacts.csv"))
		if !strings.Contains(string(staged), "ann@example.com") {
			t.Errorf("staged input = %q", staged)
		}
		assertDocumentChanges(t, w, doc, "processed", []string{"processing", "processed"})

		// A second configuration with the same contents has the same
		// fingerprint: its build reuses the ready environment (hard links)
		// instead of installing again, and works.
		twinCfg := w.addConfig("")
		twin := w.addBuild(twinCfg)
		twinRun := w.addRun(twinCfg, w.addDocument("twin.csv", csv()))
		if b := w.waitForStatus("builds", []string{twin}, time.Minute)[twin]; b.Status != "ready" {
			t.Fatalf("twin build = %+v (%s)", b, b.errText())
		}
		var twinSummary string
		w.query(&twinSummary, `SELECT summary FROM builds WHERE id = ?`, twin)
		if !strings.HasPrefix(twinSummary, "Reused a ready environment") {
			t.Errorf("twin build summary = %q, want a reuse", twinSummary)
		}
		firstCfg, errA := os.Stat(filepath.Join(venv, "pyvenv.cfg"))
		twinCfgFile, errB := os.Stat(filepath.Join(w.buildDir(twinCfg, twin), ".venv", "pyvenv.cfg"))
		if errA != nil || errB != nil || !os.SameFile(firstCfg, twinCfgFile) {
			t.Errorf("twin venv files are not hard links of the first (%v, %v)", errA, errB)
		}
		if r := w.waitForStatus("runs", []string{twinRun}, time.Minute)[twinRun]; r.Status != "succeeded" {
			t.Errorf("run on the reused environment = %+v (%s)", r, r.errText())
		}

		// Another workspace's twin reuses it too, but by copy: no file of
		// one tenant's venv may be a file of another's.
		home := w.ws
		w.ws = "ws-other-" + store.NewID()[:8]
		otherCfg := w.addConfig("")
		other := w.addBuild(otherCfg)
		if b := w.waitForStatus("builds", []string{other}, time.Minute)[other]; b.Status != "ready" {
			t.Fatalf("other workspace's twin build = %+v (%s)", b, b.errText())
		}
		w.query(&twinSummary, `SELECT summary FROM builds WHERE id = ?`, other)
		otherCfgFile, errC := os.Stat(filepath.Join(w.buildDir(otherCfg, other), ".venv", "pyvenv.cfg"))
		if !strings.HasPrefix(twinSummary, "Reused a ready environment") || errC != nil || os.SameFile(firstCfg, otherCfgFile) {
			t.Errorf("other workspace's twin: summary %q, stat %v, hard link of the first %v: want a reuse by copy",
				twinSummary, errC, errC == nil && os.SameFile(firstCfg, otherCfgFile))
		}
		w.ws = home
	})
}

// assertConsoleLines checks that non-JSON engine output became console.line
// events with scope and stream.
func assertConsoleLines(t *testing.T, events []map[string]any) {
	t.Helper()
	streams := map[string]int{}
	for _, e := range events {
		if e["event"] != "console.line" {
			continue
		}
		d := data(e)
		if d["scope"] == "" || d["scope"] == nil {
			t.Errorf("console.line without scope: %v", e)
		}
		stream, _ := d["stream"].(string)
		streams[stream]++
		if stream == "stderr" && e["level"] != "error" {
			t.Errorf("stderr console.line level = %v, want error", e["level"])
		}
		if !strings.HasPrefix(e["message"].(string), "plain "+stream+" line") {
			t.Errorf("console.line message = %q", e["message"])
		}
	}
	if streams["stdout"] != 3 || streams["stderr"] != 3 {
		t.Errorf("console.line counts = %v, want 3 stdout and 3 stderr", streams)
	}
}

// assertResultsMatchSummary compares run_metrics, run_fields and
// run_table_columns with the engine's own engine.run.completed data.
func assertResultsMatchSummary(t *testing.T, w *world, run string, sum map[string]any) {
	t.Helper()
	var m map[string]any
	rows := []map[string]any{}
	if err := w.st.TestDB().Raw(`SELECT * FROM run_metrics WHERE run_id = ?`, run).Scan(&rows).Error; err != nil || len(rows) != 1 {
		t.Fatalf("run_metrics rows = %d (%v), want 1", len(rows), err)
	}
	m = rows[0]
	counts := obj(sum["counts"])
	findings := sum["evaluation"].(map[string]any)["findings"].([]any)
	bySeverity := map[string]int{}
	for _, f := range findings {
		bySeverity[f.(map[string]any)["severity"].(string)]++
	}
	validation := obj(sum["validation"])
	want := map[string]any{
		"evaluation_outcome":          obj(sum["evaluation"])["outcome"],
		"evaluation_findings_total":   float64(len(findings)),
		"evaluation_findings_info":    float64(bySeverity["info"]),
		"evaluation_findings_warning": float64(bySeverity["warning"]),
		"evaluation_findings_error":   float64(bySeverity["error"]),
		"validation_issues_total":     validation["issues_total"],
		"validation_issues_info":      obj(validation["issues_by_severity"])["info"],
		"validation_issues_warning":   obj(validation["issues_by_severity"])["warning"],
		"validation_issues_error":     obj(validation["issues_by_severity"])["error"],
		"validation_max_severity":     validation["max_severity"],
		"workbook_count":              counts["workbooks"],
		"sheet_count":                 counts["sheets"],
		"table_count":                 counts["tables"],
		"row_count_total":             obj(counts["rows"])["total"],
		"row_count_empty":             obj(counts["rows"])["empty"],
		"column_count_total":          obj(counts["columns"])["total"],
		"column_count_empty":          obj(counts["columns"])["empty"],
		"column_count_mapped":         obj(counts["columns"])["mapped"],
		"column_count_unmapped":       obj(counts["columns"])["unmapped"],
		"field_count_expected":        obj(counts["fields"])["expected"],
		"field_count_detected":        obj(counts["fields"])["detected"],
		"field_count_not_detected":    obj(counts["fields"])["not_detected"],
		"cell_count_total":            obj(counts["cells"])["total"],
		"cell_count_non_empty":        obj(counts["cells"])["non_empty"],
	}
	for col, v := range want {
		if v == nil {
			t.Errorf("engine summary lacks the value for %s: the test engine must exercise every mapping", col)
			continue
		}
		if !sameValue(m[col], v) {
			t.Errorf("run_metrics.%s = %v (%T), engine said %v", col, m[col], m[col], v)
		}
	}

	var fields []map[string]any
	w.st.TestDB().Raw(`SELECT * FROM run_fields WHERE run_id = ? ORDER BY field`, run).Scan(&fields)
	engineFields := sum["fields"].([]any)
	if len(fields) != len(engineFields) || len(fields) == 0 {
		t.Fatalf("run_fields rows = %d, engine reported %d", len(fields), len(engineFields))
	}
	byName := map[string]map[string]any{}
	for _, f := range fields {
		byName[f["field"].(string)] = f
	}
	for _, ef := range engineFields {
		e := ef.(map[string]any)
		row := byName[e["field"].(string)]
		if row == nil {
			t.Errorf("field %v missing from run_fields", e["field"])
			continue
		}
		occ := obj(e["occurrences"])
		checks := map[string]any{"label": e["label"], "detected": e["detected"], "best_mapping_score": e["best_mapping_score"],
			"occurrences_tables": occ["tables"], "occurrences_columns": occ["columns"]}
		for col, v := range checks {
			if !sameValue(row[col], v) {
				t.Errorf("run_fields[%v].%s = %v (%T), engine said %v", e["field"], col, row[col], row[col], v)
			}
		}
	}

	var cols []map[string]any
	w.st.TestDB().Raw(`SELECT * FROM run_table_columns WHERE run_id = ? ORDER BY column_index`, run).Scan(&cols)
	wb := sum["workbooks"].([]any)[0].(map[string]any)
	sheet := wb["sheets"].([]any)[0].(map[string]any)
	table := sheet["tables"].([]any)[0].(map[string]any)
	engineCols := obj(table["structure"])["columns"].([]any)
	if len(cols) != len(engineCols) || len(cols) == 0 {
		t.Fatalf("run_table_columns rows = %d, engine reported %d", len(cols), len(engineCols))
	}
	for i, ec := range engineCols {
		e, row := ec.(map[string]any), cols[i]
		mapping, header := obj(e["mapping"]), obj(e["header"])
		checks := map[string]any{
			"workbook_index": obj(obj(wb["locator"])["workbook"])["index"], "workbook_name": obj(obj(wb["locator"])["workbook"])["name"],
			"sheet_index": obj(obj(sheet["locator"])["sheet"])["index"], "sheet_name": obj(obj(sheet["locator"])["sheet"])["name"],
			"table_index": obj(obj(table["locator"])["table"])["index"], "column_index": e["index"],
			"header_raw": header["raw"], "header_normalized": header["normalized"], "non_empty_cells": e["non_empty_cells"],
			"mapping_status": mapping["status"], "mapped_field": mapping["field"], "mapping_score": mapping["score"],
			"mapping_method": mapping["method"], "unmapped_reason": mapping["reason"],
		}
		for col, v := range checks {
			if !sameValue(row[col], v) {
				t.Errorf("run_table_columns[%d].%s = %v, engine said %v", i, col, row[col], v)
			}
		}
	}
}

// assertDocumentChanges checks the document's final status and version and
// its change rows, in order.
func assertDocumentChanges(t *testing.T, w *world, doc, status string, changes []string) {
	t.Helper()
	var d struct {
		Status  string
		Version int
	}
	w.query(&d, `SELECT status, version FROM documents WHERE id = ?`, doc)
	if d.Status != status || d.Version != 1+len(changes) {
		t.Errorf("document = %+v, want status %s version %d", d, status, 1+len(changes))
	}
	var rows []struct {
		Type            string
		DocumentVersion int
		Payload         string
	}
	w.query(&rows, `SELECT type, document_version, payload FROM document_changes WHERE document_id = ? ORDER BY cursor`, doc)
	if len(rows) != len(changes) {
		t.Fatalf("document_changes = %+v, want %d rows", rows, len(changes))
	}
	for i, r := range rows {
		var p map[string]any
		_ = json.Unmarshal([]byte(r.Payload), &p)
		if r.Type != "upsert" || r.DocumentVersion != i+2 || p["status"] != changes[i] {
			t.Errorf("document_changes[%d] = %+v, want upsert version %d status %s", i, r, i+2, changes[i])
		}
	}
}

func readEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	events, err := eventfile.ReadAll(path)
	if err != nil {
		t.Fatalf("events file %s: %v", path, err)
	}
	if len(events) == 0 {
		t.Fatalf("events file %s is empty", path)
	}
	return events
}

// finishedRunEvents reads a finished run's events file and checks that it
// opens with run.start and closes with run.complete. It reports to t, not
// w.t, as subtests call it.
func (w *world) finishedRunEvents(t *testing.T, runID string) []map[string]any {
	t.Helper()
	events := readEventsEndingWith(t, w.runEvents(runID), "run.complete")
	assertFirstLast(t, events, "run.start", "run.complete")
	return events
}

func assertFirstLast(t *testing.T, events []map[string]any, first, last string) {
	t.Helper()
	if events[0]["event"] != first || events[len(events)-1]["event"] != last {
		t.Errorf("events run from %v to %v, want %s ... %s", events[0]["event"], events[len(events)-1]["event"], first, last)
	}
	for _, e := range events {
		for _, key := range []string{"event_id", "engine_run_id", "timestamp", "level", "event", "message", "data"} {
			if _, ok := e[key]; !ok {
				t.Fatalf("event %v lacks %s", e["event"], key)
			}
		}
	}
}

func findEvent(t *testing.T, events []map[string]any, name string) map[string]any {
	t.Helper()
	for _, e := range events {
		if e["event"] == name {
			return e
		}
	}
	t.Fatalf("no %s event", name)
	return nil
}

func data(e map[string]any) map[string]any { return obj(e["data"]) }

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// sameValue compares a database value with a JSON value.
func sameValue(db, js any) bool {
	switch j := js.(type) {
	case nil:
		return db == nil
	case float64:
		v := reflect.ValueOf(db)
		switch v.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return float64(v.Int()) == j
		case reflect.Float32, reflect.Float64:
			return v.Float() == j
		}
	case bool:
		switch d := db.(type) {
		case bool:
			return d == j
		case int64:
			return (d != 0) == j
		case float64: // SQLite's BOOLEAN affinity is NUMERIC
			return (d != 0) == j
		}
	case string:
		switch d := db.(type) {
		case string:
			return d == j
		case []byte:
			return string(d) == j
		}
	}
	return false
}
