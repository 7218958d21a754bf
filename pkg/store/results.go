package store

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/ade-org/ade-worker/pkg/summary"
)

// On PostgreSQL a run's results go in as one JSON array per table, each
// row an object keyed by column, which the server unpacks itself: one
// statement (a round trip) for the three tables however many rows, where
// gorm's inserts took one per table and batch. SQLite has no round trips
// and unpacking JSON costs it more than gorm's bound rows: it keeps those.

// resultTable is a run_* table a summary fills: its columns as the schema
// names them, and how to read them from its model.
type resultTable struct {
	name   string
	fields []*schema.Field
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
	var tables []resultTable
	for _, m := range []any{&runMetricsModel{}, &runFieldModel{}, &runTableColumnModel{}} {
		s, err := schema.Parse(m, &sync.Map{}, schema.NamingStrategy{})
		if err != nil {
			panic(fmt.Sprintf("parse the model of %T: %v", m, err)) // a programming error
		}
		t := resultTable{name: s.Table}
		for _, f := range s.Fields {
			if f.DBName != "" {
				t.fields = append(t.fields, f)
			}
		}
		tables = append(tables, t)
	}
	return tables
})

// resultRowsJSON is sum's rows for run: a JSON array per result table,
// keyed by table name (the named arguments of insertResultsSQL).
func resultRowsJSON(runID string, sum *summary.Summary) (map[string]any, error) {
	var rows [3][]any
	if sum.Metrics != nil {
		rows[0] = []any{&runMetricsModel{RunID: runID, Metrics: *sum.Metrics}}
	}
	for _, f := range sum.Fields {
		rows[1] = append(rows[1], &runFieldModel{RunID: runID, Field: f})
	}
	for _, c := range sum.Columns {
		rows[2] = append(rows[2], &runTableColumnModel{RunID: runID, Column: c})
	}
	out := make(map[string]any, len(rows))
	for i, t := range resultTables() {
		objs := make([]map[string]any, len(rows[i]))
		for j, r := range rows[i] {
			v := reflect.ValueOf(r).Elem()
			obj := make(map[string]any, len(t.fields))
			for _, f := range t.fields {
				obj[f.DBName] = f.ReflectValueOf(context.Background(), v).Interface()
			}
			objs[j] = obj
		}
		data, err := json.Marshal(objs)
		if err != nil {
			return nil, fmt.Errorf("encode the %s rows: %w", t.name, err)
		}
		out[t.name] = string(data)
	}
	return out, nil
}

// insertRunResults inserts the rows of sum (none when nil) for a run.
func (s *Store) insertRunResults(tx *gorm.DB, runID string, sum *summary.Summary) error {
	if sum == nil {
		return nil
	}
	if q := s.dialect.insertResultsSQL(resultTables()); q != "" {
		args, err := resultRowsJSON(runID, sum)
		if err != nil {
			return err
		}
		if err := tx.Exec(q, args).Error; err != nil {
			return fmt.Errorf("insert the run's results: %w", err)
		}
		return nil
	}
	if sum.Metrics != nil {
		if err := tx.Create(&runMetricsModel{RunID: runID, Metrics: *sum.Metrics}).Error; err != nil {
			return fmt.Errorf("insert run_metrics: %w", err)
		}
	}
	err := insertRows(tx, "run_fields", 200, sum.Fields, func(f summary.Field) runFieldModel {
		return runFieldModel{RunID: runID, Field: f}
	})
	if err != nil {
		return err
	}
	return insertRows(tx, "run_table_columns", 50, sum.Columns, func(c summary.Column) runTableColumnModel {
		return runTableColumnModel{RunID: runID, Column: c}
	})
}

// insertRows inserts row(item) for every item, batch rows per statement.
func insertRows[T, M any](tx *gorm.DB, table string, batch int, items []T, row func(T) M) error {
	if len(items) == 0 {
		return nil
	}
	rows := make([]M, len(items))
	for i, item := range items {
		rows[i] = row(item)
	}
	if err := tx.CreateInBatches(rows, batch).Error; err != nil {
		return fmt.Errorf("insert %s: %w", table, err)
	}
	return nil
}
