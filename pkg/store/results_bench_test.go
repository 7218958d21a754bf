package store

import (
	"fmt"
	"testing"

	"github.com/ade-org/ade-worker/pkg/summary"
)

// BenchmarkResultRowsJSON encodes the results of a run of 10 fields and 20
// columns for FinishRun's one statement (PostgreSQL).
func BenchmarkResultRowsJSON(b *testing.B) {
	label, score := "Label", 0.75
	sum := &summary.Summary{Metrics: &summary.Metrics{}}
	for i := range 10 {
		sum.Fields = append(sum.Fields, summary.Field{Field: fmt.Sprint("field_", i), Label: &label, Detected: true,
			BestMappingScore: &score, OccurrencesTables: 1, OccurrencesColumns: 2})
	}
	for i := range 20 {
		sum.Columns = append(sum.Columns, summary.Column{WorkbookName: "book.xlsx", SheetName: "Sheet1", ColumnIndex: int64(i),
			HeaderRaw: &label, MappingStatus: "mapped", MappingScore: &score, NonEmptyCells: 100})
	}
	b.ReportAllocs()
	for b.Loop() {
		args := map[string]any{}
		if err := resultRowsJSON(args, "run-1", sum); err != nil {
			b.Fatal(err)
		}
	}
}
