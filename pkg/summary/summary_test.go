package summary

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func sp(s string) *string   { return &s }
func ip(i int64) *int64     { return &i }
func fp(f float64) *float64 { return &f }

// fullPayload is a realistic engine.run.completed data with every member set.
const fullPayload = `{
  "schema_version": 1,
  "scope": "run",
  "jobId": "job-1",
  "evaluation": {
    "outcome": " partial ",
    "findings": [
      {"code": "missing_field", "severity": "warning"},
      {"code": "low_confidence", "severity": "INFO"},
      {"code": "no_tables", "severity": "Error"},
      {"code": "other", "severity": "warning"},
      {"code": "unknown_severity", "severity": "critical"}
    ]
  },
  "validation": {
    "issues_total": 7,
    "issues_by_severity": {"info": 1, "warning": 2, "error": 4},
    "max_severity": "error"
  },
  "counts": {
    "workbooks": 1, "sheets": 2, "tables": 2,
    "rows": {"total": 120, "empty": 3},
    "columns": {"total": 9, "empty": 1, "mapped": 6, "unmapped": 3},
    "fields": {"expected": 5, "detected": 4, "not_detected": 1},
    "cells": {"total": 1080, "non_empty": 1000}
  },
  "outputs": {"normalized": {"path": "/runs/ws/runs/r1/output/normalized.xlsx"}},
  "fields": [
    {"field": "member_id", "label": "Member ID", "detected": true, "best_mapping_score": 0.97, "occurrences": {"tables": 2, "columns": 2}},
    {"field": "email", "label": "  ", "detected": false, "best_mapping_score": null, "occurrences": {"tables": 0, "columns": 0}},
    {"field": "dob", "detected": true}
  ],
  "workbooks": [
    {
      "locator": {"workbook": {"index": 0, "name": "members.xlsx"}},
      "sheets": [
        {
          "locator": {"sheet": {"index": 0, "name": "Sheet1"}},
          "tables": [
            {
              "locator": {"table": {"index": 0}},
              "structure": {"columns": [
                {"index": 0, "header": {"raw": " Member #", "normalized": "member"}, "non_empty_cells": 118,
                 "mapping": {"status": "mapped", "field": "member_id", "score": 0.97, "method": "classifier"}},
                {"index": 1, "header": {"raw": "Notes", "normalized": "notes"}, "non_empty_cells": 12,
                 "mapping": {"status": "Unmapped", "reason": "below_threshold"}}
              ]}
            }
          ]
        },
        {
          "locator": {"sheet": {"index": 1, "name": "Sheet2"}},
          "tables": [
            {
              "locator": {"table": {"index": 0}},
              "structure": {"columns": [
                {"index": 4, "header": {"raw": null}, "mapping": {"status": "unmapped", "unmapped_reason": "empty_column"}}
              ]}
            }
          ]
        }
      ]
    }
  ]
}`

func TestParseFull(t *testing.T) {
	got, err := Parse(json.RawMessage(fullPayload))
	if err != nil {
		t.Fatal(err)
	}
	want := &Summary{
		Metrics: &Metrics{
			EvaluationOutcome:         sp("partial"),
			EvaluationFindingsTotal:   ip(5),
			EvaluationFindingsInfo:    ip(1),
			EvaluationFindingsWarning: ip(2),
			EvaluationFindingsError:   ip(1),
			ValidationIssuesTotal:     ip(7),
			ValidationIssuesInfo:      ip(1),
			ValidationIssuesWarning:   ip(2),
			ValidationIssuesError:     ip(4),
			ValidationMaxSeverity:     sp("error"),
			WorkbookCount:             ip(1),
			SheetCount:                ip(2),
			TableCount:                ip(2),
			RowCountTotal:             ip(120),
			RowCountEmpty:             ip(3),
			ColumnCountTotal:          ip(9),
			ColumnCountEmpty:          ip(1),
			ColumnCountMapped:         ip(6),
			ColumnCountUnmapped:       ip(3),
			FieldCountExpected:        ip(5),
			FieldCountDetected:        ip(4),
			FieldCountNotDetected:     ip(1),
			CellCountTotal:            ip(1080),
			CellCountNonEmpty:         ip(1000),
		},
		Fields: []Field{
			{Field: "member_id", Label: sp("Member ID"), Detected: true, BestMappingScore: fp(0.97), OccurrencesTables: 2, OccurrencesColumns: 2},
			{Field: "email", Detected: false},
			{Field: "dob", Detected: true},
		},
		Columns: []Column{
			{WorkbookIndex: 0, WorkbookName: "members.xlsx", SheetIndex: 0, SheetName: "Sheet1", TableIndex: 0, ColumnIndex: 0,
				HeaderRaw: sp("Member #"), HeaderNormalized: sp("member"), NonEmptyCells: 118, MappingStatus: "mapped",
				MappedField: sp("member_id"), MappingScore: fp(0.97), MappingMethod: sp("classifier")},
			{WorkbookIndex: 0, WorkbookName: "members.xlsx", SheetIndex: 0, SheetName: "Sheet1", TableIndex: 0, ColumnIndex: 1,
				HeaderRaw: sp("Notes"), HeaderNormalized: sp("notes"), NonEmptyCells: 12, MappingStatus: "unmapped",
				UnmappedReason: sp("below_threshold")},
			{WorkbookIndex: 0, WorkbookName: "members.xlsx", SheetIndex: 1, SheetName: "Sheet2", TableIndex: 0, ColumnIndex: 4,
				MappingStatus: "unmapped", UnmappedReason: sp("empty_column")},
		},
		OutputPath: "/runs/ws/runs/r1/output/normalized.xlsx",
	}
	assertSummary(t, got, want)
}

// assertSummary compares two summaries and names the first difference.
func assertSummary(t *testing.T, got, want *Summary) {
	t.Helper()
	if !reflect.DeepEqual(got.Metrics, want.Metrics) {
		t.Errorf("Metrics:\n got %s\nwant %s", dump(got.Metrics), dump(want.Metrics))
	}
	if !reflect.DeepEqual(got.Fields, want.Fields) {
		t.Errorf("Fields:\n got %s\nwant %s", dump(got.Fields), dump(want.Fields))
	}
	if !reflect.DeepEqual(got.Columns, want.Columns) {
		t.Errorf("Columns:\n got %s\nwant %s", dump(got.Columns), dump(want.Columns))
	}
	if got.OutputPath != want.OutputPath {
		t.Errorf("OutputPath = %q, want %q", got.OutputPath, want.OutputPath)
	}
}

func dump(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// patch returns fullPayload with the members at the given dotted paths
// replaced by the given JSON values (a path ending in [i] indexes a list;
// the value "DELETE" removes the member).
func patch(t *testing.T, edits ...string) json.RawMessage {
	t.Helper()
	var root any
	if err := json.Unmarshal([]byte(fullPayload), &root); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(edits); i += 2 {
		keys := strings.Split(edits[i], ".")
		parent := root
		for _, k := range keys[:len(keys)-1] {
			parent = step(t, parent, k)
		}
		last := keys[len(keys)-1]
		m, ok := parent.(map[string]any)
		if !ok {
			t.Fatalf("patch %s: parent is not an object", edits[i])
		}
		if edits[i+1] == "DELETE" {
			delete(m, last)
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(edits[i+1]), &v); err != nil {
			t.Fatalf("patch value %s: %v", edits[i+1], err)
		}
		m[last] = v
	}
	b, _ := json.Marshal(root)
	return b
}

func step(t *testing.T, v any, k string) any {
	t.Helper()
	if name, idx, ok := strings.Cut(k, "["); ok {
		l := v.(map[string]any)[name].([]any)
		var i int
		if err := json.Unmarshal([]byte(strings.TrimSuffix(idx, "]")), &i); err != nil {
			t.Fatal(err)
		}
		return l[i]
	}
	return v.(map[string]any)[k]
}

func TestParseWrongTypes(t *testing.T) {
	full, err := Parse(json.RawMessage(fullPayload))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edits []string
		check func(t *testing.T, s *Summary)
	}{
		{"counts.rows is a string", []string{"counts.rows", `"x"`}, func(t *testing.T, s *Summary) {
			if s.Metrics.RowCountTotal != nil || s.Metrics.RowCountEmpty != nil {
				t.Error("row counts kept")
			}
			if *s.Metrics.CellCountTotal != 1080 || *s.Metrics.SheetCount != 2 {
				t.Error("other counts lost")
			}
		}},
		{"counts is a list", []string{"counts", `[1,2]`}, func(t *testing.T, s *Summary) {
			if s.Metrics.WorkbookCount != nil || s.Metrics.CellCountNonEmpty != nil || s.Metrics.EvaluationOutcome == nil {
				t.Errorf("metrics = %s", dump(s.Metrics))
			}
		}},
		{"integer edge cases", []string{
			"counts.workbooks", `"12"`, "counts.sheets", `3.0`, "counts.tables", `2.5`,
			"counts.rows.total", `true`, "counts.rows.empty", `" 1e3 "`, "counts.cells.total", `1e20`,
			"counts.cells.non_empty", `"NaN"`, "counts.columns.total", `"0x10"`, "counts.columns.empty", `-2147483648`,
			"counts.columns.mapped", `2147483648`, "counts.columns.unmapped", `null`, "counts.fields.expected", `"abc"`,
			"counts.fields.detected", `{}`, "counts.fields.not_detected", `"-4"`,
		}, func(t *testing.T, s *Summary) {
			m := s.Metrics
			wantInts := map[string]*int64{
				"workbooks": m.WorkbookCount, "sheets": m.SheetCount, "tables": m.TableCount, "rows.total": m.RowCountTotal,
				"rows.empty": m.RowCountEmpty, "cells.total": m.CellCountTotal, "cells.non_empty": m.CellCountNonEmpty,
				"columns.total": m.ColumnCountTotal, "columns.empty": m.ColumnCountEmpty, "columns.mapped": m.ColumnCountMapped,
				"columns.unmapped": m.ColumnCountUnmapped, "fields.expected": m.FieldCountExpected,
				"fields.detected": m.FieldCountDetected, "fields.not_detected": m.FieldCountNotDetected,
			}
			want := map[string]*int64{
				"workbooks": ip(12), "sheets": ip(3), "rows.empty": ip(1000), "columns.empty": ip(-2147483648),
				"fields.not_detected": ip(-4),
			}
			for k, got := range wantInts {
				if !reflect.DeepEqual(got, want[k]) {
					t.Errorf("counts.%s = %s, want %s", k, dump(got), dump(want[k]))
				}
			}
		}},
		{"evaluation findings not a list", []string{"evaluation.findings", `{"a":1}`}, func(t *testing.T, s *Summary) {
			m := s.Metrics
			if m.EvaluationFindingsTotal != nil || m.EvaluationFindingsInfo != nil || *m.EvaluationOutcome != "partial" {
				t.Errorf("metrics = %s", dump(m))
			}
		}},
		{"findings that are not objects count in the total only", []string{"evaluation.findings", `[1,"warning",{"severity":5},{"severity":"warning"}]`}, func(t *testing.T, s *Summary) {
			m := s.Metrics
			if *m.EvaluationFindingsTotal != 4 || *m.EvaluationFindingsWarning != 1 || *m.EvaluationFindingsInfo != 0 || *m.EvaluationFindingsError != 0 {
				t.Errorf("metrics = %s", dump(m))
			}
		}},
		{"validation of wrong types", []string{"validation", `{"issues_total":false,"issues_by_severity":[1],"max_severity":3}`}, func(t *testing.T, s *Summary) {
			m := s.Metrics
			if m.ValidationIssuesTotal != nil || m.ValidationIssuesInfo != nil || m.ValidationMaxSeverity != nil {
				t.Errorf("metrics = %s", dump(m))
			}
		}},
		{"field detected maybe", []string{"fields[0].detected", `"maybe"`}, func(t *testing.T, s *Summary) {
			if len(s.Fields) != 2 || s.Fields[0].Field != "email" {
				t.Errorf("fields = %s", dump(s.Fields))
			}
		}},
		{"field detected accepted forms", []string{"fields[0].detected", `0`, "fields[1].detected", `" TRUE "`, "fields[2].detected", `"1"`}, func(t *testing.T, s *Summary) {
			if len(s.Fields) != 3 || s.Fields[0].Detected || !s.Fields[1].Detected || !s.Fields[2].Detected {
				t.Errorf("fields = %s", dump(s.Fields))
			}
		}},
		{"field detected 2 or missing", []string{"fields[0].detected", `2`, "fields[1].detected", "DELETE"}, func(t *testing.T, s *Summary) {
			if len(s.Fields) != 1 || s.Fields[0].Field != "dob" {
				t.Errorf("fields = %s", dump(s.Fields))
			}
		}},
		{"field name missing, empty or a number", []string{"fields[0].field", `5`, "fields[1].field", `"  "`}, func(t *testing.T, s *Summary) {
			if len(s.Fields) != 1 || s.Fields[0].Field != "dob" {
				t.Errorf("fields = %s", dump(s.Fields))
			}
		}},
		{"field score abc, occurrences wrong", []string{"fields[0].best_mapping_score", `"abc"`, "fields[0].occurrences", `{"tables":"x","columns":"3"}`, "fields[0].label", `7`}, func(t *testing.T, s *Summary) {
			f := s.Fields[0]
			if f.Field != "member_id" || f.BestMappingScore != nil || f.OccurrencesTables != 0 || f.OccurrencesColumns != 3 || f.Label != nil {
				t.Errorf("field = %s", dump(f))
			}
		}},
		{"field score as a string", []string{"fields[0].best_mapping_score", `" 0.5 "`}, func(t *testing.T, s *Summary) {
			if s.Fields[0].BestMappingScore == nil || *s.Fields[0].BestMappingScore != 0.5 {
				t.Errorf("field = %s", dump(s.Fields[0]))
			}
		}},
		{"fields is an object", []string{"fields", `{"field":"x","detected":true}`}, func(t *testing.T, s *Summary) {
			if len(s.Fields) != 0 || len(s.Columns) != 3 {
				t.Errorf("fields = %s", dump(s.Fields))
			}
		}},
		{"workbook locator missing", []string{"workbooks[0].locator", "DELETE"}, func(t *testing.T, s *Summary) {
			if len(s.Columns) != 0 || len(s.Fields) != 3 || s.Metrics == nil {
				t.Errorf("columns = %s", dump(s.Columns))
			}
		}},
		{"workbook name empty", []string{"workbooks[0].locator.workbook.name", `""`}, func(t *testing.T, s *Summary) {
			if len(s.Columns) != 0 {
				t.Errorf("columns = %s", dump(s.Columns))
			}
		}},
		{"sheet name a number skips that sheet", []string{"workbooks[0].sheets[0].locator.sheet.name", `3`}, func(t *testing.T, s *Summary) {
			if len(s.Columns) != 1 || s.Columns[0].SheetName != "Sheet2" {
				t.Errorf("columns = %s", dump(s.Columns))
			}
		}},
		{"sheet index a string is accepted", []string{"workbooks[0].sheets[1].locator.sheet.index", `"7"`}, func(t *testing.T, s *Summary) {
			if len(s.Columns) != 3 || s.Columns[2].SheetIndex != 7 {
				t.Errorf("columns = %s", dump(s.Columns))
			}
		}},
		{"table index fractional skips that table", []string{"workbooks[0].sheets[0].tables[0].locator.table.index", `1.5`}, func(t *testing.T, s *Summary) {
			if len(s.Columns) != 1 || s.Columns[0].SheetName != "Sheet2" {
				t.Errorf("columns = %s", dump(s.Columns))
			}
		}},
		{"column index bool skips that column", []string{"workbooks[0].sheets[0].tables[0].structure.columns[0].index", `true`}, func(t *testing.T, s *Summary) {
			if len(s.Columns) != 2 || s.Columns[0].ColumnIndex != 1 {
				t.Errorf("columns = %s", dump(s.Columns))
			}
		}},
		{"column details of wrong types", []string{
			"workbooks[0].sheets[0].tables[0].structure.columns[0].mapping", `"mapped"`,
			"workbooks[0].sheets[0].tables[0].structure.columns[0].header", `["a"]`,
			"workbooks[0].sheets[0].tables[0].structure.columns[0].non_empty_cells", `"abc"`,
			"workbooks[0].sheets[0].tables[0].structure.columns[1].mapping.status", `5`,
			"workbooks[0].sheets[0].tables[0].structure.columns[1].mapping.score", `"abc"`,
		}, func(t *testing.T, s *Summary) {
			c0, c1 := s.Columns[0], s.Columns[1]
			if c0.MappingStatus != "unknown" || c0.HeaderRaw != nil || c0.NonEmptyCells != 0 || c0.MappedField != nil {
				t.Errorf("column 0 = %s", dump(c0))
			}
			if c1.MappingStatus != "unknown" || c1.MappingScore != nil || *c1.UnmappedReason != "below_threshold" {
				t.Errorf("column 1 = %s", dump(c1))
			}
		}},
		{"columns without structure", []string{"workbooks[0].sheets[1].tables[0].structure", "DELETE", "workbooks[0].sheets[1].tables[0].columns", `[{"index":9}]`}, func(t *testing.T, s *Summary) {
			if len(s.Columns) != 3 || s.Columns[2].ColumnIndex != 9 || s.Columns[2].MappingStatus != "unknown" {
				t.Errorf("columns = %s", dump(s.Columns))
			}
		}},
		{"workbooks of wrong types", []string{"workbooks", `[1, "x", null, {"locator":{"workbook":{"index":0,"name":"a"}},"sheets":"x"}]`}, func(t *testing.T, s *Summary) {
			if len(s.Columns) != 0 {
				t.Errorf("columns = %s", dump(s.Columns))
			}
		}},
		{"output path not a string", []string{"outputs.normalized.path", `5`}, func(t *testing.T, s *Summary) {
			if s.OutputPath != "" {
				t.Errorf("OutputPath = %q", s.OutputPath)
			}
		}},
		{"outputs missing", []string{"outputs", "DELETE"}, func(t *testing.T, s *Summary) {
			if s.OutputPath != "" || len(s.Columns) != 3 {
				t.Errorf("OutputPath = %q", s.OutputPath)
			}
		}},
		{"scope null counts as run", []string{"scope", `null`}, func(t *testing.T, s *Summary) {
			assertSummary(t, s, full)
		}},
		{"scope missing counts as run", []string{"scope", "DELETE"}, func(t *testing.T, s *Summary) {
			assertSummary(t, s, full)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(patch(t, tt.edits...))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func TestParseScope(t *testing.T) {
	tests := []struct {
		scope string
		empty bool
	}{
		{`"run"`, false},
		{`" Run "`, false},
		{`"file"`, true},
		{`"sheet"`, true},
		{`5`, true},
		{`{"kind":"run"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.scope, func(t *testing.T) {
			s, err := Parse(patch(t, "scope", tt.scope))
			if err != nil {
				t.Fatal(err)
			}
			isEmpty := s.Metrics == nil && s.Fields == nil && s.Columns == nil && s.OutputPath == ""
			if isEmpty != tt.empty {
				t.Errorf("scope %s: empty = %v, want %v", tt.scope, isEmpty, tt.empty)
			}
		})
	}
}

func TestParseDuplicates(t *testing.T) {
	data := `{
	  "fields": [
	    {"field": "a", "label": "first", "detected": true},
	    {"field": "b", "detected": false},
	    {"field": " a ", "label": "second", "detected": false},
	    {"field": "` + strings.Repeat("x", 130) + `", "label": "long 1", "detected": true},
	    {"field": "` + strings.Repeat("x", 129) + `", "label": "long 2", "detected": true}
	  ],
	  "workbooks": [
	    {"locator": {"workbook": {"index": 0, "name": "w"}}, "sheets": [
	      {"locator": {"sheet": {"index": 0, "name": "s"}}, "tables": [
	        {"locator": {"table": {"index": 0}}, "structure": {"columns": [
	          {"index": 0, "mapping": {"status": "mapped", "field": "a"}},
	          {"index": 0, "mapping": {"status": "unmapped"}},
	          {"index": 1}
	        ]}},
	        {"locator": {"table": {"index": 0}}, "structure": {"columns": [{"index": 1, "mapping": {"status": "mapped"}}, {"index": 2}]}}
	      ]},
	      {"locator": {"sheet": {"index": 0, "name": "same index, other name"}}, "tables": [
	        {"locator": {"table": {"index": 0}}, "structure": {"columns": [{"index": 2}, {"index": 3}]}}
	      ]}
	    ]}
	  ]
	}`
	s, err := Parse(json.RawMessage(data))
	if err != nil {
		t.Fatal(err)
	}
	if s.Metrics != nil {
		t.Errorf("Metrics = %s, want nil", dump(s.Metrics))
	}
	if len(s.Fields) != 3 || s.Fields[0].Field != "a" || *s.Fields[0].Label != "first" || s.Fields[1].Field != "b" ||
		s.Fields[2].Field != strings.Repeat("x", widthField) || *s.Fields[2].Label != "long 1" {
		t.Errorf("fields = %s, want a (first), b and the first long field cut to %d characters", dump(s.Fields), widthField)
	}
	var keys []string
	for _, c := range s.Columns {
		keys = append(keys, c.SheetName+"/"+itoa(c.ColumnIndex)+"/"+c.MappingStatus)
	}
	want := []string{"s/0/mapped", "s/1/unknown", "s/2/unknown", "same index, other name/3/unknown"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("columns = %v, want %v", keys, want)
	}
}

func itoa(i int64) string { return dump(i) }

func TestParseNotObject(t *testing.T) {
	for _, data := range []string{"", " ", "null", "[]", `[{"scope":"run"}]`, "5", `"x"`, "{", `{"a":1}{}`, `{} x`, `{"a":}`} {
		if s, err := Parse(json.RawMessage(data)); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", data, s)
		}
	}
	s, err := Parse(json.RawMessage(" {} \n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Metrics != nil || s.Fields != nil || s.Columns != nil || s.OutputPath != "" {
		t.Errorf("Parse({}) = %s, want an empty summary", dump(s))
	}
}

func TestStringsFitColumns(t *testing.T) {
	tests := []struct {
		in    string
		width int
		want  *string
	}{
		{"  plain  ", 10, sp("plain")},
		{"a\x00b", 10, sp("ab")},
		{"\x00 \x00", 10, nil},
		{"", 0, nil},
		{"ééééé", 3, sp("ééé")},
		{"ab cd", 3, sp("ab")},
		{strings.Repeat("x", 300), 0, sp(strings.Repeat("x", 300))},
	}
	for _, tt := range tests {
		if got := str(tt.in, tt.width); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("str(%q, %d) = %s, want %s", tt.in, tt.width, dump(got), dump(tt.want))
		}
	}
	if got := str(5, 0); got != nil {
		t.Errorf("str(5) = %q, want nil", *got)
	}
}

func TestNumbers(t *testing.T) {
	tests := []struct {
		in      any
		wantInt *int64
		wantF   *float64
	}{
		{json.Number("3"), ip(3), fp(3)},
		{json.Number("3.0"), ip(3), fp(3)},
		{json.Number("-3.5"), nil, fp(-3.5)},
		{json.Number("1e2"), ip(100), fp(100)},
		{json.Number("1e400"), nil, nil},
		{" 42 ", ip(42), fp(42)},
		{"4.25", nil, fp(4.25)},
		{"Inf", nil, nil},
		{"NaN", nil, nil},
		{"0x1p3", nil, nil},
		{"1_000", nil, nil},
		{"", nil, nil},
		{true, nil, nil},
		{nil, nil, nil},
		{float64(7), ip(7), fp(7)},
		{json.Number("2147483647"), ip(2147483647), fp(2147483647)},
		{json.Number("2147483648"), nil, fp(2147483648)},
	}
	for _, tt := range tests {
		if got := integer(tt.in); !reflect.DeepEqual(got, tt.wantInt) {
			t.Errorf("integer(%#v) = %s, want %s", tt.in, dump(got), dump(tt.wantInt))
		}
		if got := float(tt.in); !reflect.DeepEqual(got, tt.wantF) {
			t.Errorf("float(%#v) = %s, want %s", tt.in, dump(got), dump(tt.wantF))
		}
	}
}

func TestBoolean(t *testing.T) {
	tests := []struct {
		in     any
		want   bool
		wantOK bool
	}{
		{true, true, true},
		{false, false, true},
		{json.Number("1"), true, true},
		{json.Number("0"), false, true},
		{json.Number("1.0"), true, true},
		{json.Number("2"), false, false},
		{" True ", true, true},
		{"FALSE", false, true},
		{"1", true, true},
		{"0", false, true},
		{"yes", true, true},
		{"no", false, true},
		{"maybe", false, false},
		{"", false, false},
		{nil, false, false},
		{[]any{}, false, false},
	}
	for _, tt := range tests {
		if got, ok := boolean(tt.in); got != tt.want || ok != tt.wantOK {
			t.Errorf("boolean(%#v) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(fullPayload))
	f.Add([]byte(`{"scope":"run","fields":[{"field":"a","detected":"1"}],"workbooks":[{"locator":{"workbook":{"index":"0","name":"w"}}}]}`))
	f.Add([]byte(`{"counts":{"rows":{"total":1e999}}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		if s == nil {
			t.Fatal("Parse returned nil without an error")
		}
	})
}

// tableShapesPayload has one sheet whose tables come in both shapes the
// worker accepts: the original worker's (locator.table_index, columns[],
// header_raw/header_normalized) and the real engine's (locator.table.index,
// structure.columns[], header.raw/normalized).
const tableShapesPayload = `{"workbooks": [
  {"locator": {"workbook": {"index": 0, "name": "w.xlsx"}}, "sheets": [
    {"locator": {"sheet": {"index": 0, "name": "s"}}, "tables": [%s]}
  ]}
]}`

const (
	originalTable = `{"locator": {"table_index": 1}, "columns": [
	  {"index": 0, "header_raw": " Member # ", "header_normalized": "member", "non_empty_cells": 5,
	   "mapping": {"status": "MAPPED", "field": "member_id", "score": 0.9, "method": "classifier"}},
	  {"index": 1, "header_raw": "Notes", "mapping": {"status": "unmapped", "unmapped_reason": "below_threshold"}}
	]}`
	engineTable = `{"locator": {"table": {"index": 2}}, "structure": {"columns": [
	  {"index": 0, "header": {"raw": "Email", "normalized": "email"}, "non_empty_cells": 3,
	   "mapping": {"status": "mapped", "field": "email"}}
	]}}`
)

var (
	originalColumns = []Column{
		{WorkbookName: "w.xlsx", SheetName: "s", TableIndex: 1, ColumnIndex: 0,
			HeaderRaw: sp("Member #"), HeaderNormalized: sp("member"), NonEmptyCells: 5, MappingStatus: "mapped",
			MappedField: sp("member_id"), MappingScore: fp(0.9), MappingMethod: sp("classifier")},
		{WorkbookName: "w.xlsx", SheetName: "s", TableIndex: 1, ColumnIndex: 1,
			HeaderRaw: sp("Notes"), MappingStatus: "unmapped", UnmappedReason: sp("below_threshold")},
	}
	engineColumns = []Column{
		{WorkbookName: "w.xlsx", SheetName: "s", TableIndex: 2, ColumnIndex: 0,
			HeaderRaw: sp("Email"), HeaderNormalized: sp("email"), NonEmptyCells: 3, MappingStatus: "mapped",
			MappedField: sp("email")},
	}
)

func TestParseTableShapes(t *testing.T) {
	cases := []struct {
		name   string
		tables string
		want   []Column
	}{
		{"original worker's shape", originalTable, originalColumns},
		{"real engine's shape", engineTable, engineColumns},
		{"both in one report", originalTable + "," + engineTable, append(append([]Column{}, originalColumns...), engineColumns...)},
		{"engine first, then original", engineTable + "," + originalTable, append(append([]Column{}, engineColumns...), originalColumns...)},
		// A table without any index in either shape stores nothing; its
		// neighbour is kept.
		{"no table index", `{"locator": {}, "columns": [{"index": 0}]},` + engineTable, engineColumns},
		{"table_index of the wrong type", `{"locator": {"table_index": "x"}, "columns": [{"index": 0}]},` + engineTable, engineColumns},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(json.RawMessage(fmt.Sprintf(tableShapesPayload, tc.tables)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Columns, tc.want) {
				t.Errorf("Columns:\n got %s\nwant %s", dump(s.Columns), dump(tc.want))
			}
		})
	}
}

// TestWidthsFromTags pins the widths read from the gorm tags to the ADE
// API's VARCHAR columns, so a tag edit that would let a string overflow its
// column fails here.
func TestWidthsFromTags(t *testing.T) {
	for name, c := range map[string]struct{ got, want int }{
		"evaluation_outcome": {width(Metrics{}, "EvaluationOutcome"), 20}, "validation_max_severity": {width(Metrics{}, "ValidationMaxSeverity"), 10},
		"field": {widthField, 128}, "label": {widthLabel, 255}, "workbook_name": {widthName, 255},
		"mapping_status": {widthStatus, 32}, "mapping_method": {widthMethod, 32}, "unmapped_reason": {widthReason, 64},
		"header_raw (text)": {widthText, 0},
	} {
		if c.got != c.want {
			t.Errorf("width of %s = %d, want %d", name, c.got, c.want)
		}
	}
}

// TestEveryMetricHasASource guards against a Metrics field that nothing
// fills: each has a "from" path or is one of the counted findings.
func TestEveryMetricHasASource(t *testing.T) {
	counted := map[string]bool{"EvaluationFindingsTotal": true, "EvaluationFindingsInfo": true,
		"EvaluationFindingsWarning": true, "EvaluationFindingsError": true}
	mt := reflect.TypeOf(Metrics{})
	for i := range mt.NumField() {
		f := mt.Field(i)
		if _, ok := f.Tag.Lookup("from"); ok == counted[f.Name] {
			t.Errorf("Metrics.%s: want either a from tag or to be a counted finding", f.Name)
		}
	}
	if got, want := len(metricSources)+len(counted), mt.NumField(); got != want {
		t.Errorf("%d metrics have a source, want all %d", got, want)
	}
}
