package main

import (
	"database/sql"
	"encoding/json"
	"io"

	"github.com/ade-org/ade-worker/pkg/store"
)

// statusDoc is the output of `supervisor status --json`: what `status`
// prints, with field names documented in the README and kept stable.
type statusDoc struct {
	Counts []statusCount `json:"counts"`
	Recent []recentJob   `json:"recent"`
	Paused []pauseDoc    `json:"paused"`
}

type statusCount struct {
	Kind   store.Kind   `json:"kind"`
	Status store.Status `json:"status"`
	Count  int64        `json:"count"`
}

type recentJob struct {
	jobHead
	CreatedAt *string `json:"created_at"`
}

// jobHead is what `status --json` and `inspect --json` both say of a job,
// under the same names.
type jobHead struct {
	Kind         store.Kind   `json:"kind"`
	ID           string       `json:"id"`
	Status       store.Status `json:"status"`
	AttemptCount int          `json:"attempt_count"`
	ExitCode     *int64       `json:"exit_code"`
	ClaimedBy    *string      `json:"claimed_by"`
	ErrorMessage *string      `json:"error_message"`
}

func headOf(kind store.Kind, id string, status store.Status, attempts int, exit sql.NullInt64, claimedBy, errMsg sql.NullString) jobHead {
	return jobHead{Kind: kind, ID: id, Status: status, AttemptCount: attempts,
		ExitCode: nullInt(exit), ClaimedBy: nullString(claimedBy), ErrorMessage: nullString(errMsg)}
}

func writeStatusJSON(w io.Writer, counts []store.StatusCount, jobs []store.JobSummary, pauses []store.Pause) error {
	doc := statusDoc{Counts: []statusCount{}, Recent: []recentJob{}, Paused: pauseDocs(pauses)}
	for _, n := range counts {
		doc.Counts = append(doc.Counts, statusCount{Kind: n.Kind, Status: n.Status, Count: n.Count})
	}
	for _, j := range jobs {
		doc.Recent = append(doc.Recent, recentJob{
			jobHead:   headOf(j.Kind, j.ID, j.Status, j.AttemptCount, j.ExitCode, j.ClaimedBy, j.ErrorMessage),
			CreatedAt: jsonTime(j.CreatedAt)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
