// Package summary turns the data of the engine's engine.run.completed event
// into the rows the worker stores for a run: run_metrics (Metrics),
// run_fields (Field) and run_table_columns (Column), and the normalized
// output's path.
//
// The data comes from user-written configuration code run by the engine, so
// nothing in it is trusted: a member that is missing or of the wrong type is
// ignored on its own (a metric stays nil, a field or column without its key
// is skipped) and the rest is kept. Rows are made to fit the ADE database's
// columns: integers must fit in a 32-bit INTEGER, strings are trimmed, NUL
// bytes removed and cut to their VARCHAR width in characters.
package summary

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Metrics is the run_metrics row. A nil field is a metric the engine did not
// report (or reported with the wrong type).
//
// The gorm tags of Metrics, Field and Column are the one definition of
// their columns: pkg/store creates and fills its tables from these types,
// and Parse cuts strings to the VARCHAR widths the tags give.
//
// A metric's "from" tag is its dotted path in the event's data; the four
// evaluation_findings counts have none: they are counted from
// evaluation.findings. Adding a metric is adding a field here.
type Metrics struct {
	EvaluationOutcome         *string `gorm:"type:varchar(20)" from:"evaluation.outcome"`
	EvaluationFindingsTotal   *int64  `gorm:"type:integer"`
	EvaluationFindingsInfo    *int64  `gorm:"type:integer"`
	EvaluationFindingsWarning *int64  `gorm:"type:integer"`
	EvaluationFindingsError   *int64  `gorm:"type:integer"`
	ValidationIssuesTotal     *int64  `gorm:"type:integer" from:"validation.issues_total"`
	ValidationIssuesInfo      *int64  `gorm:"type:integer" from:"validation.issues_by_severity.info"`
	ValidationIssuesWarning   *int64  `gorm:"type:integer" from:"validation.issues_by_severity.warning"`
	ValidationIssuesError     *int64  `gorm:"type:integer" from:"validation.issues_by_severity.error"`
	ValidationMaxSeverity     *string `gorm:"type:varchar(10)" from:"validation.max_severity"`
	WorkbookCount             *int64  `gorm:"type:integer" from:"counts.workbooks"`
	SheetCount                *int64  `gorm:"type:integer" from:"counts.sheets"`
	TableCount                *int64  `gorm:"type:integer" from:"counts.tables"`
	RowCountTotal             *int64  `gorm:"type:integer" from:"counts.rows.total"`
	RowCountEmpty             *int64  `gorm:"type:integer" from:"counts.rows.empty"`
	ColumnCountTotal          *int64  `gorm:"type:integer" from:"counts.columns.total"`
	ColumnCountEmpty          *int64  `gorm:"type:integer" from:"counts.columns.empty"`
	ColumnCountMapped         *int64  `gorm:"type:integer" from:"counts.columns.mapped"`
	ColumnCountUnmapped       *int64  `gorm:"type:integer" from:"counts.columns.unmapped"`
	FieldCountExpected        *int64  `gorm:"type:integer" from:"counts.fields.expected"`
	FieldCountDetected        *int64  `gorm:"type:integer" from:"counts.fields.detected"`
	FieldCountNotDetected     *int64  `gorm:"type:integer" from:"counts.fields.not_detected"`
	CellCountTotal            *int64  `gorm:"type:integer" from:"counts.cells.total"`
	CellCountNonEmpty         *int64  `gorm:"type:integer" from:"counts.cells.non_empty"`
}

// Field is one run_fields row: a canonical field of the configuration.
// (run, Field) is its key.
type Field struct {
	Field              string   `gorm:"type:varchar(128);primaryKey;index:ix_run_fields_field"`
	Label              *string  `gorm:"type:varchar(255)"`
	Detected           bool     `gorm:"not null"`
	BestMappingScore   *float64 ``
	OccurrencesTables  int64    `gorm:"type:integer;not null"`
	OccurrencesColumns int64    `gorm:"type:integer;not null"`
}

// Column is one run_table_columns row: a physical column of a detected table.
// (run, WorkbookIndex, SheetIndex, TableIndex, ColumnIndex) is its key.
type Column struct {
	WorkbookIndex    int64    `gorm:"type:integer;primaryKey;autoIncrement:false"`
	WorkbookName     string   `gorm:"type:varchar(255);not null"`
	SheetIndex       int64    `gorm:"type:integer;primaryKey;autoIncrement:false"`
	SheetName        string   `gorm:"type:varchar(255);not null"`
	TableIndex       int64    `gorm:"type:integer;primaryKey;autoIncrement:false"`
	ColumnIndex      int64    `gorm:"type:integer;primaryKey;autoIncrement:false"`
	HeaderRaw        *string  `gorm:"type:text"`
	HeaderNormalized *string  `gorm:"type:text"`
	NonEmptyCells    int64    `gorm:"type:integer;not null"`
	MappingStatus    string   `gorm:"type:varchar(32);not null"` // lower case; "unknown" when the engine gave none
	MappedField      *string  `gorm:"type:varchar(128)"`
	MappingScore     *float64 ``
	MappingMethod    *string  `gorm:"type:varchar(32)"`
	UnmappedReason   *string  `gorm:"type:varchar(64)"`
}

// Summary is what a run's engine.run.completed event reports.
type Summary struct {
	// Metrics is nil when the engine reported no metric at all.
	Metrics *Metrics
	// Fields holds one row per field name, the first the engine listed.
	Fields []Field
	// Columns holds one row per column key, the first the engine listed.
	Columns []Column
	// OutputPath is data.outputs.normalized.path as the engine wrote it, ""
	// when absent or not a string. See RelativeOutputPath.
	OutputPath string
}

// Widths of the ADE database's VARCHAR columns, in characters (0 for TEXT),
// read from the gorm tags above.
var (
	widthField  = width(Field{}, "Field")
	widthLabel  = width(Field{}, "Label")
	widthName   = width(Column{}, "WorkbookName") // and SheetName
	widthStatus = width(Column{}, "MappingStatus")
	widthMethod = width(Column{}, "MappingMethod")
	widthReason = width(Column{}, "UnmappedReason")
	widthText   = width(Column{}, "HeaderRaw")
)

// statusUnknown is the mapping status of a column the engine gave none for.
const statusUnknown = "unknown"

const errNotObject = "summary: engine.run.completed data is not a JSON object"

// Parse reads the data of an engine.run.completed event. It fails only when
// data is not a single JSON object. When data has a "scope" other than "run"
// (a per-file summary of a batch), it returns an empty Summary.
func Parse(data json.RawMessage) (*Summary, error) {
	root, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	if scope, ok := root["scope"]; ok && scope != nil {
		if s, ok := scope.(string); !ok || !strings.EqualFold(strings.TrimSpace(s), "run") {
			return &Summary{}, nil
		}
	}
	s := &Summary{
		Metrics: parseMetrics(root),
		Fields:  parseFields(list(root["fields"])),
		Columns: parseColumns(list(root["workbooks"])),
	}
	s.OutputPath, _ = get(root, "outputs", "normalized", "path").(string)
	return s, nil
}

func decodeObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("%s: %w", errNotObject, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: more than one JSON value", errNotObject)
	}
	obj, ok := root.(map[string]any)
	if !ok {
		return nil, errors.New(errNotObject)
	}
	return obj, nil
}

func parseMetrics(root map[string]any) *Metrics {
	m := &Metrics{}
	v := reflect.ValueOf(m).Elem()
	for _, src := range metricSources {
		value := get(root, src.path...)
		if src.width < 0 {
			v.Field(src.index).Set(reflect.ValueOf(integer(value)))
		} else {
			v.Field(src.index).Set(reflect.ValueOf(str(value, src.width)))
		}
	}
	if findings, ok := object(root["evaluation"])["findings"].([]any); ok {
		var bySeverity [3]int64
		for _, f := range findings {
			if i := severityIndex(object(f)["severity"]); i >= 0 {
				bySeverity[i]++
			}
		}
		m.EvaluationFindingsTotal = ptr(int64(len(findings)))
		m.EvaluationFindingsInfo = ptr(bySeverity[0])
		m.EvaluationFindingsWarning = ptr(bySeverity[1])
		m.EvaluationFindingsError = ptr(bySeverity[2])
	}
	if *m == (Metrics{}) {
		return nil
	}
	return m
}

// metricSource is where one field of Metrics comes from.
type metricSource struct {
	index int      // of the field in Metrics
	path  []string // keys in the event's data
	width int      // of a string metric; -1 for an integer one
}

// metricSources are read from Metrics' "from" tags once.
var metricSources = func() []metricSource {
	var out []metricSource
	t := reflect.TypeOf(Metrics{})
	for i := range t.NumField() {
		f := t.Field(i)
		from, ok := f.Tag.Lookup("from")
		if !ok {
			continue
		}
		src := metricSource{index: i, path: strings.Split(from, "."), width: -1}
		if f.Type.Elem().Kind() == reflect.String {
			src.width = width(Metrics{}, f.Name)
		}
		out = append(out, src)
	}
	return out
}()

// severityIndex maps info, warning and error (any case) to 0, 1 and 2.
func severityIndex(v any) int {
	s, _ := v.(string)
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "info":
		return 0
	case "warning":
		return 1
	case "error":
		return 2
	}
	return -1
}

// parseFields reads fields[]; an item needs a field name and a detected flag.
func parseFields(items []any) []Field {
	var out []Field
	seen := map[string]bool{}
	for _, item := range items {
		f := object(item)
		name := str(f["field"], widthField)
		detected, ok := boolean(f["detected"])
		if name == nil || !ok || seen[*name] {
			continue
		}
		seen[*name] = true
		occurrences := object(f["occurrences"])
		out = append(out, Field{
			Field:              *name,
			Label:              str(f["label"], widthLabel),
			Detected:           detected,
			BestMappingScore:   float(f["best_mapping_score"]),
			OccurrencesTables:  integerOr0(occurrences["tables"]),
			OccurrencesColumns: integerOr0(occurrences["columns"]),
		})
	}
	return out
}

// columnKey is the primary key of a run_table_columns row within a run.
type columnKey struct{ workbook, sheet, table, column int64 }

// parseColumns walks workbooks[].sheets[].tables[] and each table's columns.
// A table may come in either of two shapes, decided per table: the real
// engine's (locator.table.index, structure.columns[], header.raw and
// header.normalized) or the original worker's (locator.table_index,
// columns[], header_raw and header_normalized); see tableIndex,
// tableColumns and parseColumn.
func parseColumns(workbooks []any) []Column {
	var out []Column
	seen := map[columnKey]bool{}
	for _, wb := range workbooks {
		wbIndex, wbName, ok := indexAndName(get(wb, "locator", "workbook"))
		if !ok {
			continue
		}
		for _, sh := range list(object(wb)["sheets"]) {
			shIndex, shName, ok := indexAndName(get(sh, "locator", "sheet"))
			if !ok {
				continue
			}
			for _, tb := range list(object(sh)["tables"]) {
				tbIndex := tableIndex(tb)
				if tbIndex == nil {
					continue
				}
				for _, col := range tableColumns(tb) {
					c, ok := parseColumn(col)
					if !ok {
						continue
					}
					c.WorkbookIndex, c.WorkbookName = wbIndex, wbName
					c.SheetIndex, c.SheetName = shIndex, shName
					c.TableIndex = *tbIndex
					key := columnKey{wbIndex, shIndex, *tbIndex, c.ColumnIndex}
					if seen[key] {
						continue
					}
					seen[key] = true
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// indexAndName reads a workbook or sheet locator; both are required.
func indexAndName(locator any) (int64, string, bool) {
	loc := object(locator)
	index := integer(loc["index"])
	name := str(loc["name"], widthName)
	if index == nil || name == nil {
		return 0, "", false
	}
	return *index, *name, true
}

// tableIndex reads locator.table.index, or locator.table_index when the
// table has no locator.table object (the original worker's shape).
func tableIndex(table any) *int64 {
	loc := object(object(table)["locator"])
	if t, ok := loc["table"].(map[string]any); ok {
		return integer(t["index"])
	}
	return integer(loc["table_index"])
}

// tableColumns returns a table's structure.columns, or its columns when it
// has no structure.
func tableColumns(table any) []any {
	if cols, ok := get(table, "structure", "columns").([]any); ok {
		return cols
	}
	return list(object(table)["columns"])
}

// parseColumn reads one column; its index is required.
func parseColumn(v any) (Column, bool) {
	col := object(v)
	index := integer(col["index"])
	if index == nil {
		return Column{}, false
	}
	raw, normalized := header(col)
	mapping := object(col["mapping"])
	status := statusUnknown
	if s := str(mapping["status"], widthStatus); s != nil {
		status = strings.ToLower(*s)
	}
	reason := str(mapping["reason"], widthReason)
	if reason == nil {
		reason = str(mapping["unmapped_reason"], widthReason)
	}
	return Column{
		ColumnIndex:      *index,
		HeaderRaw:        raw,
		HeaderNormalized: normalized,
		NonEmptyCells:    integerOr0(col["non_empty_cells"]),
		MappingStatus:    status,
		MappedField:      str(mapping["field"], widthField),
		MappingScore:     float(mapping["score"]),
		MappingMethod:    str(mapping["method"], widthMethod),
		UnmappedReason:   reason,
	}, true
}

// header reads a column's header.raw and header.normalized, or its
// header_raw and header_normalized when it has no header object.
func header(col map[string]any) (raw, normalized *string) {
	if h, ok := col["header"].(map[string]any); ok {
		return str(h["raw"], widthText), str(h["normalized"], widthText)
	}
	return str(col["header_raw"], widthText), str(col["header_normalized"], widthText)
}
