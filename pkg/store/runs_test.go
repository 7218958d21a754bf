package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/summary"
)

// testSummary builds an engine summary whose values all carry tag, so rows
// of one summary are told apart from another's.
func testSummary(tag string) *summary.Summary {
	return &summary.Summary{
		Metrics: &summary.Metrics{
			EvaluationOutcome: ptr("success"), ValidationMaxSeverity: ptr("warning"),
			ValidationIssuesTotal: ptr(int64(len(tag))), RowCountTotal: ptr(int64(42)), CellCountNonEmpty: ptr(int64(7)),
		},
		Fields: []summary.Field{
			{Field: "amount_" + tag, Label: ptr("Amount"), Detected: true, BestMappingScore: ptr(0.75), OccurrencesTables: 1, OccurrencesColumns: 2},
			{Field: "name_" + tag, Detected: false, OccurrencesTables: 0, OccurrencesColumns: 0},
		},
		Columns: []summary.Column{
			{WorkbookIndex: 0, WorkbookName: "in.xlsx", SheetIndex: 0, SheetName: "S1", TableIndex: 0, ColumnIndex: 0,
				HeaderRaw: ptr("Amount " + tag), NonEmptyCells: 5, MappingStatus: "mapped", MappedField: ptr("amount_" + tag),
				MappingScore: ptr(0.75), MappingMethod: ptr("classifier")},
			{WorkbookIndex: 0, WorkbookName: "in.xlsx", SheetIndex: 1, SheetName: "S2", TableIndex: 0, ColumnIndex: 3,
				HeaderRaw: ptr("?"), NonEmptyCells: 0, MappingStatus: "unmapped", UnmappedReason: ptr("empty_" + tag)},
		},
	}
}

// results are the run_* rows of one run, in a comparable form.
type results struct {
	Metrics []string
	Fields  []string
	Columns []string
}

func (e *env) results(t *testing.T, runID string) results {
	t.Helper()
	var r results
	// Read back into the summary's own row types: their gorm tags define the
	// tables.
	var metrics []summary.Metrics
	e.scan(t, &metrics, `SELECT * FROM run_metrics WHERE run_id = ?`, runID)
	for _, m := range metrics {
		r.Metrics = append(r.Metrics, fmt.Sprintf("%s %s %d %d %d %v", *m.EvaluationOutcome, *m.ValidationMaxSeverity,
			*m.ValidationIssuesTotal, *m.RowCountTotal, *m.CellCountNonEmpty, m.SheetCount))
	}
	var fields []summary.Field
	e.scan(t, &fields, `SELECT * FROM run_fields WHERE run_id = ? ORDER BY field`, runID)
	for _, f := range fields {
		r.Fields = append(r.Fields, fmt.Sprintf("%s %s %v %s %d %d", f.Field, deref(f.Label), f.Detected, deref(f.BestMappingScore),
			f.OccurrencesTables, f.OccurrencesColumns))
	}
	var cols []summary.Column
	e.scan(t, &cols, `SELECT * FROM run_table_columns WHERE run_id = ?
		ORDER BY workbook_index, sheet_index, table_index, column_index`, runID)
	for _, c := range cols {
		r.Columns = append(r.Columns, fmt.Sprintf("%d/%s %d/%s %d %d %s %d %s %s %s %s %s", c.WorkbookIndex, c.WorkbookName,
			c.SheetIndex, c.SheetName, c.TableIndex, c.ColumnIndex, deref(c.HeaderRaw), c.NonEmptyCells, c.MappingStatus,
			deref(c.MappedField), deref(c.MappingScore), deref(c.MappingMethod), deref(c.UnmappedReason)))
	}
	return r
}

func deref[T any](p *T) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprint(*p)
}

// wantResults is what results should read for a summary.
func wantResults(s *summary.Summary) results {
	var r results
	if s == nil {
		return r
	}
	if m := s.Metrics; m != nil {
		r.Metrics = []string{fmt.Sprintf("%s %s %d %d %d %v", *m.EvaluationOutcome, *m.ValidationMaxSeverity,
			*m.ValidationIssuesTotal, *m.RowCountTotal, *m.CellCountNonEmpty, m.SheetCount)}
	}
	for _, f := range s.Fields {
		r.Fields = append(r.Fields, fmt.Sprintf("%s %s %v %s %d %d", f.Field, deref(f.Label), f.Detected, deref(f.BestMappingScore),
			f.OccurrencesTables, f.OccurrencesColumns))
	}
	for _, c := range s.Columns {
		r.Columns = append(r.Columns, fmt.Sprintf("%d/%s %d/%s %d %d %s %d %s %s %s %s %s", c.WorkbookIndex, c.WorkbookName,
			c.SheetIndex, c.SheetName, c.TableIndex, c.ColumnIndex, deref(c.HeaderRaw), c.NonEmptyCells, c.MappingStatus,
			deref(c.MappedField), deref(c.MappingScore), deref(c.MappingMethod), deref(c.UnmappedReason)))
	}
	return r
}

func TestFinishRun(t *testing.T) {
	t.Parallel()
	fewer := testSummary("second")
	fewer.Fields = fewer.Fields[:1]
	fewer.Columns = nil
	noMetrics := testSummary("third")
	noMetrics.Metrics = nil
	cases := []struct {
		name      string
		succeeded bool
		exitCode  *int
		errMsg    string
		output    string
		first     *summary.Summary // written by attempt 1
		second    *summary.Summary // written by attempt 2, replacing it
	}{
		{name: "succeeded", succeeded: true, exitCode: ptr(0), output: "output/normalized.xlsx", first: testSummary("first"), second: testSummary("second")},
		{name: "fewer rows replace more", succeeded: true, exitCode: ptr(0), first: testSummary("first"), second: fewer},
		{name: "no metrics", succeeded: true, exitCode: ptr(0), first: testSummary("first"), second: noMetrics},
		{name: "failed without summary clears rows", exitCode: ptr(3), errMsg: "Engine exited with 3", first: testSummary("first")},
		{name: "failed without exit code", errMsg: "Jobrunner died", first: nil, second: testSummary("x")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachEnv(t, func(t *testing.T, e *env) {
				ctx := context.Background()
				docID := e.doc(t)
				runID := e.runFor(t, docID, "", t0.Add(-time.Hour), t0.Add(-time.Hour))
				// Attempt 1 finishes and writes its results; the run is
				// then queued again (a retry) and attempt 2 finishes.
				f1 := claimAndStart(t, e, runID, docID)
				if err := e.s.FinishRun(ctx, f1, store.RunOutcome{Succeeded: true, ExitCode: ptr(0), Summary: tc.first, DocumentID: docID}); err != nil {
					t.Fatal(err)
				}
				if got, want := e.results(t, runID), wantResults(tc.first); !reflect.DeepEqual(got, want) {
					t.Fatalf("results of attempt 1:\n got %q\nwant %q", got, want)
				}
				e.exec(t, `UPDATE runs SET status = 'queued', claimed_by = NULL WHERE id = ?`, runID)
				f2 := claimAndStart(t, e, runID, docID)
				if f2.Attempt != 2 {
					t.Fatalf("second attempt = %d", f2.Attempt)
				}
				err := e.s.FinishRun(ctx, f2, store.RunOutcome{Succeeded: tc.succeeded, ExitCode: tc.exitCode, Error: tc.errMsg,
					OutputPath: tc.output, Summary: tc.second, DocumentID: docID})
				if err != nil {
					t.Fatal(err)
				}

				r := e.runRow(t, runID)
				wantStatus, wantDoc := store.StatusFailed, "failed"
				if tc.succeeded {
					wantStatus, wantDoc = store.StatusSucceeded, "processed"
				}
				if r.Status != wantStatus || r.ClaimExpiresAt.Valid || r.ErrorMessage.String != tc.errMsg || r.ErrorMessage.Valid != (tc.errMsg != "") {
					t.Errorf("run: %+v", r)
				}
				if r.ExitCode.Valid != (tc.exitCode != nil) || (tc.exitCode != nil && int(r.ExitCode.Int64) != *tc.exitCode) {
					t.Errorf("exit_code = %+v, want %v", r.ExitCode, deref(tc.exitCode))
				}
				nearNow(t, "completed_at", r.FinishedAt, 0)
				var output []sql.NullString
				e.scan(t, &output, `SELECT output_path FROM runs WHERE id = ?`, runID)
				if len(output) != 1 || output[0].Valid != (tc.output != "") || output[0].String != tc.output {
					t.Errorf("output_path = %+v, want %q", output, tc.output)
				}
				if got, want := e.results(t, runID), wantResults(tc.second); !reflect.DeepEqual(got, want) {
					t.Errorf("results of attempt 2:\n got %q\nwant %q", got, want)
				}

				checkDocumentMoves(t, e, docID, runID, wantDoc)
			})
		})
	}
}

func TestFinishRunWithoutDocument(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		docID func(e *env, t *testing.T) string
	}{
		{"no document id (validate only)", func(*env, *testing.T) string { return "" }},
		{"document row gone", func(*env, *testing.T) string { return store.NewID() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachEnv(t, func(t *testing.T, e *env) {
				ctx := context.Background()
				other := e.doc(t) // must stay untouched
				runID := e.run(t, "", t0, t0)
				f := e.claimRun(t, "w", runID)
				if err := e.s.FinishRun(ctx, f, store.RunOutcome{Succeeded: true, ExitCode: ptr(0), DocumentID: tc.docID(e, t)}); err != nil {
					t.Fatal(err)
				}
				if r := e.runRow(t, runID); r.Status != "succeeded" {
					t.Errorf("run: %+v", r)
				}
				if d := e.docRow(t, other); d.Status != "uploaded" || d.Version != 1 {
					t.Errorf("unrelated document changed: %+v", d)
				}
				var n int
				e.scan(t, &n, `SELECT COUNT(*) FROM document_changes`)
				if n != 0 {
					t.Errorf("%d document_changes rows, want 0", n)
				}
			})
		})
	}
}

func TestFinishBuild(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		outcome    store.BuildOutcome
		wantStatus store.Status
		wantActive bool
	}{
		{"ready", store.BuildOutcome{Succeeded: true, ExitCode: ptr(0), EngineVersion: "1.2.3", PythonVersion: "3.12.1"}, "ready", true},
		{"failed", store.BuildOutcome{ExitCode: ptr(1), Error: "pip failed"}, "failed", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachEnv(t, func(t *testing.T, e *env) {
				ctx := context.Background()
				id := e.build(t, "queued")
				got, err := e.s.ClaimBuilds(ctx, "w", time.Minute, 1)
				if err != nil || len(got) != 1 {
					t.Fatalf("claim: %+v %v", got, err)
				}
				f := store.Fence{Kind: store.KindBuild, ID: id, Worker: "w", Attempt: 1}
				if err := e.s.FinishBuild(ctx, store.Fence{Kind: store.KindBuild, ID: id, Worker: "x", Attempt: 1}, tc.outcome); err != store.ErrLeaseLost {
					t.Errorf("wrong fence: %v, want ErrLeaseLost", err)
				}
				if err := e.s.FinishBuild(ctx, f, tc.outcome); err != nil {
					t.Fatal(err)
				}
				r := e.buildRow(t, id)
				if r.Status != tc.wantStatus || r.ClaimExpiresAt.Valid || r.ErrorMessage.String != tc.outcome.Error {
					t.Errorf("build: %+v", r)
				}
				nearNow(t, "finished_at", r.FinishedAt, 0)
				var active []sql.NullString
				e.scan(t, &active, `SELECT active_build_id FROM configurations WHERE id = ?`, e.cfg)
				if len(active) != 1 || (active[0].String == id) != tc.wantActive {
					t.Errorf("active_build_id = %+v, want active %v", active, tc.wantActive)
				}
			})
		})
	}
}

func TestLoadRunContext(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		build := e.build(t, "ready")
		doc := e.doc(t)
		e.exec(t, `UPDATE builds SET engine_spec = 'ade-engine==1.2' WHERE id = ?`, build)

		full := &store.ClaimedRun{ConfigurationID: e.cfg, InputDocumentID: doc, BuildID: sql.NullString{String: build, Valid: true}}
		rc, err := e.s.LoadRunContext(ctx, full)
		if err != nil {
			t.Fatal(err)
		}
		if rc.Configuration == nil || rc.Configuration.ID != e.cfg || rc.Configuration.WorkspaceID != e.ws || rc.Configuration.Status == "" {
			t.Errorf("configuration = %+v", rc.Configuration)
		}
		if d := rc.Document; d == nil || d.ID != doc || d.WorkspaceID != e.ws || d.OriginalFilename != "in.xlsx" ||
			d.StoredURI != "files/"+doc || d.Status == "" || d.Version < 1 {
			t.Errorf("document = %+v", rc.Document)
		}
		if b := rc.Build; b == nil || b.ID != build || b.ConfigurationID != e.cfg || b.Status != "ready" ||
			b.EngineSpec.String != "ade-engine==1.2" || b.Fingerprint == "" {
			t.Errorf("build = %+v", rc.Build)
		}

		// Missing rows and a run without a build come back nil, not as errors.
		missing := &store.ClaimedRun{ConfigurationID: store.NewID(), InputDocumentID: store.NewID(),
			BuildID: sql.NullString{String: store.NewID(), Valid: true}}
		rc, err = e.s.LoadRunContext(ctx, missing)
		if err != nil || rc.Configuration != nil || rc.Document != nil || rc.Build != nil {
			t.Errorf("missing rows: %+v, %v", rc, err)
		}
		noBuild := &store.ClaimedRun{ConfigurationID: e.cfg, InputDocumentID: doc}
		rc, err = e.s.LoadRunContext(ctx, noBuild)
		if err != nil || rc.Configuration == nil || rc.Document == nil || rc.Build != nil {
			t.Errorf("no build: %+v, %v", rc, err)
		}
	})
}

// checkDocumentMoves checks a document two attempts of runID moved, the
// second to wantDoc.
func checkDocumentMoves(t *testing.T, e *env, docID, runID, wantDoc string) {
	t.Helper()
	// Document: uploaded(1) -> processing(2) -> processed(3) ->
	// processing(4) -> final(5), one change row per move.
	d := e.docRow(t, docID)
	if d.Status != wantDoc || d.Version != 5 {
		t.Errorf("document: %+v, want %s version 5", d, wantDoc)
	}
	nearNow(t, "last_run_at", d.LastRunAt, 0)
	changes := e.docChanges(t, docID)
	wantStatuses := []string{"processing", "processed", "processing", wantDoc}
	if len(changes) != len(wantStatuses) {
		t.Fatalf("document_changes: %+v", changes)
	}
	for i, c := range changes {
		var p struct {
			Status  string
			Version int
			RunID   string `json:"run_id"`
		}
		if err := json.Unmarshal([]byte(c.Payload), &p); err != nil {
			t.Fatalf("payload %q: %v", c.Payload, err)
		}
		if c.Type != "upsert" || c.DocumentVersion != i+2 || p.Version != i+2 || p.Status != wantStatuses[i] || p.RunID != runID {
			t.Errorf("change %d: %+v (payload %+v), want %s version %d", i, c, p, wantStatuses[i], i+2)
		}
		// Both databases write the same bytes (PostgreSQL builds
		// the payload in SQL).
		if want := fmt.Sprintf(`{"run_id":%q,"status":%q,"version":%d}`, runID, wantStatuses[i], i+2); c.Payload != want {
			t.Errorf("change %d payload = %s, want %s", i, c.Payload, want)
		}
	}
}

// TestRunResultsKeepEveryValue writes a summary whose every column holds a
// value that an encoding could bend (quotes, backslashes, non-ASCII, a
// float with no short decimal form, the largest integer the columns hold, false, zero) and
// one with every optional column NULL, and reads the rows back as the
// models they were made from.
func TestRunResultsKeepEveryValue(t *testing.T) {
	t.Parallel()
	odd := `it's "quoted" \ back\slash, tab	é 日本 💡`
	big, tiny := int64(math.MaxInt32), 0.1+0.2 // the columns are integer
	var full summary.Metrics
	v := reflect.ValueOf(&full).Elem()
	for i := range v.NumField() {
		switch f := v.Field(i); f.Type().Elem().Kind() {
		case reflect.String:
			f.Set(reflect.ValueOf(ptr(fmt.Sprintf("m%d", i))))
		case reflect.Int64:
			f.Set(reflect.ValueOf(ptr(big - int64(i))))
		}
	}
	rich := &summary.Summary{
		Metrics: &full,
		Fields: []summary.Field{
			{Field: "a" + odd, Label: ptr(odd), Detected: true, BestMappingScore: ptr(tiny), OccurrencesTables: big, OccurrencesColumns: -1},
			{Field: "b", Detected: false},
		},
		Columns: []summary.Column{
			{WorkbookIndex: 1, WorkbookName: odd, SheetIndex: 2, SheetName: "S", TableIndex: 3, ColumnIndex: 4,
				HeaderRaw: ptr(odd), HeaderNormalized: ptr(""), NonEmptyCells: big, MappingStatus: "mapped",
				MappedField: ptr("f"), MappingScore: ptr(1e-300), MappingMethod: ptr("m"), UnmappedReason: ptr("r")},
			{WorkbookName: "", SheetName: "", MappingStatus: "unknown"},
		},
	}
	bare := &summary.Summary{Metrics: &summary.Metrics{}, Fields: []summary.Field{{Field: "only"}}}
	for name, sum := range map[string]*summary.Summary{"rich": rich, "bare": bare} {
		t.Run(name, func(t *testing.T) {
			eachEnv(t, func(t *testing.T, e *env) {
				runID := succeedWith(t, e, sum)
				var metrics []summary.Metrics
				e.scan(t, &metrics, `SELECT * FROM run_metrics WHERE run_id = ?`, runID)
				if len(metrics) != 1 || !reflect.DeepEqual(metrics[0], *sum.Metrics) {
					t.Errorf("run_metrics:\n got %+v\nwant %+v", metrics, *sum.Metrics)
				}
				var fields []summary.Field
				e.scan(t, &fields, `SELECT * FROM run_fields WHERE run_id = ? ORDER BY field`, runID)
				if !reflect.DeepEqual(fields, sum.Fields) {
					t.Errorf("run_fields:\n got %+v\nwant %+v", fields, sum.Fields)
				}
				var cols []summary.Column
				e.scan(t, &cols, `SELECT * FROM run_table_columns WHERE run_id = ? ORDER BY workbook_index DESC`, runID)
				if !reflect.DeepEqual(cols, sum.Columns) {
					t.Errorf("run_table_columns:\n got %+v\nwant %+v", cols, sum.Columns)
				}
			})
		})
	}
}

// A claim on PostgreSQL reads the run's configuration, document and build
// in its own statement (ClaimedRun.Loaded), under every claim order and
// cap; LoadRunContext then hands that back without a statement. On SQLite
// the claim leaves it to LoadRunContext. Either way the context is the
// one LoadRunContext reads.
func TestClaimReadsRunContext(t *testing.T) {
	t.Parallel()
	for name, policy := range map[string]store.ClaimPolicy{"fair": {}, "fifo": {FIFO: true}, "capped": {WorkspaceMaxRunning: 2}} {
		t.Run(name, func(t *testing.T) {
			eachEnv(t, func(t *testing.T, e *env) {
				ctx := context.Background()
				e.s.SetClaimPolicy(policy)
				build := e.build(t, "ready")
				e.exec(t, `UPDATE builds SET engine_spec = 'ade-engine==1.2' WHERE id = ?`, build)
				doc := e.doc(t)
				withDoc := e.runFor(t, doc, build, t0, t0)
				noDoc := e.runFor(t, store.NewID(), build, t0.Add(time.Second), t0.Add(time.Second))

				_, runs, err := e.s.ClaimJobs(ctx, "w", time.Minute, 0, 2)
				if err != nil || len(runs) != 2 {
					t.Fatalf("claim %+v: %d runs, %v; want both", policy, len(runs), err)
				}
				for _, r := range runs {
					if (r.Loaded != nil) != (e.backend == "postgres") {
						t.Fatalf("%+v: run %s Loaded = %+v on %s", policy, r.ID, r.Loaded, e.backend)
					}
					read := r
					read.Loaded = nil
					want, err := e.s.LoadRunContext(ctx, &read)
					if err != nil {
						t.Fatal(err)
					}
					got, err := e.s.LoadRunContext(ctx, &r)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("%+v: run %s: claim's context %+v, LoadRunContext's %+v", policy, r.ID, got, want)
					}
					switch r.ID {
					case withDoc:
						if got.Document == nil || got.Document.ID != doc || got.Build == nil || got.Build.ID != build ||
							got.Build.EngineSpec.String != "ade-engine==1.2" || got.Configuration == nil {
							t.Errorf("%+v: run with a document: %+v", policy, got)
						}
					case noDoc:
						if got.Document != nil || got.Build == nil || got.Configuration == nil {
							t.Errorf("%+v: run without its document: %+v", policy, got)
						}
					}
				}
			})
		})
	}
}

// A summary of more rows than one statement takes (SQLite inserts them in
// batches of about 1,000 values) keeps every row.
func TestFinishRunManyResults(t *testing.T) {
	t.Parallel()
	const fields, columns = 301, 157
	sum := &summary.Summary{Metrics: &summary.Metrics{RowCountTotal: ptr(int64(9))}}
	for i := range fields {
		sum.Fields = append(sum.Fields, summary.Field{Field: fmt.Sprint("f", i), OccurrencesTables: int64(i)})
	}
	for i := range columns {
		sum.Columns = append(sum.Columns, summary.Column{WorkbookName: "w", SheetName: "s", ColumnIndex: int64(i),
			NonEmptyCells: int64(i), MappingStatus: "mapped"})
	}
	eachEnv(t, func(t *testing.T, e *env) {
		runID := succeedWith(t, e, sum)
		var got struct{ Fields, Columns, FieldSum, ColumnSum int64 }
		e.scan(t, &got, `SELECT (SELECT COUNT(*) FROM run_fields WHERE run_id = @r) AS fields,
			(SELECT COUNT(*) FROM run_table_columns WHERE run_id = @r) AS columns,
			(SELECT SUM(occurrences_tables) FROM run_fields WHERE run_id = @r) AS field_sum,
			(SELECT SUM(non_empty_cells) FROM run_table_columns WHERE run_id = @r) AS column_sum`, map[string]any{"r": runID})
		if got.Fields != fields || got.Columns != columns ||
			got.FieldSum != fields*(fields-1)/2 || got.ColumnSum != columns*(columns-1)/2 {
			t.Errorf("rows = %+v; want %d fields and %d columns, every one", got, fields, columns)
		}
	})
}

// succeedWith queues a run of a new document, claims it and finishes it
// succeeded with sum; it returns the run's id.
func succeedWith(t *testing.T, e *env, sum *summary.Summary) string {
	t.Helper()
	docID := e.doc(t)
	runID := e.runFor(t, docID, "", t0.Add(-time.Hour), t0.Add(-time.Hour))
	f := claimAndStart(t, e, runID, docID)
	if err := e.s.FinishRun(context.Background(), f, store.RunOutcome{Succeeded: true, ExitCode: ptr(0), Summary: sum, DocumentID: docID}); err != nil {
		t.Fatal(err)
	}
	return runID
}
