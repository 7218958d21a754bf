package main

import (
	"encoding/json"
	"io"

	"github.com/ade-org/ade-worker/pkg/store"
)

// statusDoc is the output of `supervisor status --json`: what `status`
// prints, with field names documented in the README and kept stable.
type statusDoc struct {
	Counts []statusCount `json:"counts"`
	Recent []recentJob   `json:"recent"`
}

type statusCount struct {
	Kind   string `json:"kind"`
	Status string `json:"status"`
	Count  int64  `json:"count"`
}

type recentJob struct {
	Kind         string  `json:"kind"`
	ID           string  `json:"id"`
	Status       string  `json:"status"`
	AttemptCount int     `json:"attempt_count"`
	ExitCode     *int64  `json:"exit_code"`
	ClaimedBy    *string `json:"claimed_by"`
	CreatedAt    *string `json:"created_at"`
	ErrorMessage *string `json:"error_message"`
}

func writeStatusJSON(w io.Writer, counts []store.StatusCount, jobs []store.JobSummary) error {
	doc := statusDoc{Counts: []statusCount{}, Recent: []recentJob{}}
	for _, n := range counts {
		doc.Counts = append(doc.Counts, statusCount{Kind: string(n.Kind), Status: string(n.Status), Count: n.Count})
	}
	for _, j := range jobs {
		doc.Recent = append(doc.Recent, recentJob{Kind: string(j.Kind), ID: j.ID, Status: string(j.Status),
			AttemptCount: j.AttemptCount, ExitCode: nullInt(j.ExitCode), ClaimedBy: nullString(j.ClaimedBy),
			CreatedAt: jsonTime(j.CreatedAt), ErrorMessage: nullString(j.ErrorMessage)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
