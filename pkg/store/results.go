package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/ade-org/ade-worker/pkg/summary"
)

// On PostgreSQL a run's results go in as one JSON array per table, each
// row an object keyed by column, which the server unpacks itself, inside
// FinishRun's one statement (finishRunSQL) however many rows, where gorm's
// inserts took one per table and batch. SQLite has no round trips
// and unpacking JSON costs it more than gorm's bound rows: it keeps those.

// resultTable is a run_* table a summary fills: its columns as the schema
// names them, how to read them from its model, and its rows of a summary.
type resultTable struct {
	name   string
	fields []*schema.Field
	keys   []string                                       // each field's `"column":`, for resultRowsJSON
	rows   func(runID string, sum *summary.Summary) []any // model pointers
	// insert and row make insertRunResults' statements: `INSERT INTO t
	// (columns) VALUES ` and one row's placeholders.
	insert, row string
}

func (t resultTable) columns() []string {
	cols := make([]string, len(t.fields))
	for i, f := range t.fields {
		cols[i] = f.DBName
	}
	return cols
}

// resultTables are run_metrics, run_fields and run_table_columns, parsed
// from the models the migration creates them from.
var resultTables = sync.OnceValue(func() []resultTable {
	models := []struct {
		model any
		rows  func(runID string, sum *summary.Summary) []any
	}{
		{&runMetricsModel{}, func(runID string, sum *summary.Summary) (rows []any) {
			if sum.Metrics != nil {
				rows = append(rows, &runMetricsModel{RunID: runID, Metrics: *sum.Metrics})
			}
			return rows
		}},
		{&runFieldModel{}, func(runID string, sum *summary.Summary) (rows []any) {
			for _, f := range sum.Fields {
				rows = append(rows, &runFieldModel{RunID: runID, Field: f})
			}
			return rows
		}},
		{&runTableColumnModel{}, func(runID string, sum *summary.Summary) (rows []any) {
			for _, c := range sum.Columns {
				rows = append(rows, &runTableColumnModel{RunID: runID, Column: c})
			}
			return rows
		}},
	}
	var tables []resultTable
	for _, m := range models {
		s, err := schema.Parse(m.model, &sync.Map{}, schema.NamingStrategy{})
		if err != nil {
			panic(fmt.Sprintf("parse the model of %T: %v", m.model, err)) // a programming error
		}
		t := resultTable{name: s.Table, rows: m.rows}
		for _, f := range s.Fields {
			if f.DBName != "" {
				key, _ := json.Marshal(f.DBName)
				t.fields = append(t.fields, f)
				t.keys = append(t.keys, string(key)+":")
			}
		}
		t.insert = "INSERT INTO " + t.name + " (" + strings.Join(t.columns(), ", ") + ") VALUES "
		t.row = "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.fields)), ", ") + ")"
		tables = append(tables, t)
	}
	return tables
})

// resultRowsJSON adds sum's rows for run to args: a JSON array per result
// table, keyed by table name (the named arguments of finishRunSQL); empty
// arrays when sum is nil. Each row is written as an object field by field
// (a map per row, sorted by json.Marshal, took 2.4 times as long and 4
// times the allocations: BenchmarkResultRowsJSON).
func resultRowsJSON(args map[string]any, runID string, sum *summary.Summary) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // a newline after each value: JSON whitespace
	for _, t := range resultTables() {
		var rows []any
		if sum != nil {
			rows = t.rows(runID, sum)
		}
		buf.Reset()
		buf.WriteByte('[')
		for i, r := range rows {
			if i > 0 {
				buf.WriteByte(',')
			}
			v := reflect.ValueOf(r).Elem()
			buf.WriteByte('{')
			for j, f := range t.fields {
				if j > 0 {
					buf.WriteByte(',')
				}
				buf.WriteString(t.keys[j])
				if err := enc.Encode(f.ReflectValueOf(context.Background(), v).Interface()); err != nil {
					return fmt.Errorf("encode the %s rows: %w", t.name, err)
				}
			}
			buf.WriteByte('}')
		}
		buf.WriteByte(']')
		args[t.name] = buf.String()
	}
	return nil
}

// insertRunResults inserts the rows of sum (none when nil) for a run
// (SQLite): per table, one INSERT of many rows per batch, the values read
// from the models as resultRowsJSON reads them, so the two cannot differ
// on a column. (gorm's batched inserts built the same statements through
// its callbacks: 13 KB and 117 allocations more a run.)
func (s *Store) insertRunResults(tx *gorm.DB, runID string, sum *summary.Summary) error {
	if sum == nil {
		return nil
	}
	ctx := tx.Statement.Context
	for _, t := range resultTables() {
		rows := t.rows(runID, sum)
		// At most about 1,000 values a statement: SQLite's old limit on
		// bound parameters was 999.
		batch := max(1, 1000/len(t.fields))
		for len(rows) > 0 {
			n := min(batch, len(rows))
			var q strings.Builder
			q.WriteString(t.insert)
			args := make([]any, 0, n*len(t.fields))
			for i, r := range rows[:n] {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString(t.row)
				v := reflect.ValueOf(r).Elem()
				for _, f := range t.fields {
					args = append(args, f.ReflectValueOf(ctx, v).Interface())
				}
			}
			if _, err := tx.Statement.ConnPool.ExecContext(ctx, q.String(), args...); err != nil {
				return fmt.Errorf("insert %s: %w", t.name, err)
			}
			rows = rows[n:]
		}
	}
	return nil
}
