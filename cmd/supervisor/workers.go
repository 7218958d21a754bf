package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/store"
)

func workersCmd() *cli.Command {
	return &cli.Command{
		Name:  "workers",
		Usage: "list the supervisors: host, pid, version, last seen, jobs held; gone when not seen for longer than their lease",
		Description: `Every supervisor keeps a row of itself, refreshed by its beat (every
lease / 3) and deleted when it stops cleanly. LEADER marks the one that does
the fleet's maintenance (rescue of expired leases, cleanup, queue gauges). A row not refreshed for longer
than that supervisor's lease (by the database's clock) is shown as gone: the
process was killed or lost the database. Gone rows are removed a day later.`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print one JSON document (fields in the README)"}},
		Action: withStore(func(c *cli.Context, e *env) error {
			rows, err := e.store.Workers(c.Context)
			if err != nil {
				return err
			}
			docs := make([]workerDoc, len(rows))
			for i := range rows {
				docs[i] = workerDocOf(&rows[i])
			}
			if c.Bool("json") {
				return writeJSON(map[string]any{"workers": docs})
			}
			return writeWorkers(os.Stdout, docs)
		}),
	}
}

// workerDoc is one supervisor in `workers --json` and `inspect --json`.
type workerDoc struct {
	WorkerID         string  `json:"worker_id"`
	Host             string  `json:"host"`
	PID              int     `json:"pid"`
	Version          string  `json:"version"`
	StartedAt        *string `json:"started_at"`
	LastSeenAt       *string `json:"last_seen_at"`
	SecondsSinceSeen float64 `json:"seconds_since_seen"`
	Concurrency      int     `json:"concurrency"`
	JobsHeld         int     `json:"jobs_held"`
	Draining         bool    `json:"draining"`
	LeaseSeconds     float64 `json:"lease_seconds"`
	State            string  `json:"state"`  // "up" or "gone"
	Leader           bool    `json:"leader"` // does the fleet's maintenance now
}

func workerDocOf(w *store.WorkerRow) workerDoc {
	state := "up"
	if w.Gone {
		state = "gone"
	}
	return workerDoc{WorkerID: w.WorkerID, Host: w.Host, PID: w.PID, Version: w.Version, StartedAt: jsonTime(w.StartedAt),
		LastSeenAt: jsonTime(w.LastSeenAt), SecondsSinceSeen: w.SinceSeen().Round(time.Millisecond).Seconds(),
		Concurrency: w.Concurrency, JobsHeld: w.JobsHeld, Draining: w.Draining, LeaseSeconds: w.LeaseSeconds, State: state,
		Leader: w.Leader}
}

func writeWorkers(out io.Writer, docs []workerDoc) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "WORKER\tHOST\tPID\tVERSION\tSTARTED\tLAST SEEN\tCONCURRENCY\tJOBS\tDRAINING\tSTATE\tLEADER")
	for _, d := range docs {
		lead := ""
		if d.Leader {
			lead = "leader"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%.1fs ago\t%d\t%d\t%t\t%s\t%s\n", d.WorkerID, d.Host, d.PID, d.Version,
			deref(d.StartedAt), d.SecondsSinceSeen, d.Concurrency, d.JobsHeld, d.Draining, d.State, lead)
	}
	return w.Flush()
}

// claimWorker is the row of the supervisor holding a running job, nil when
// the job is not held or its supervisor has no row (stopped cleanly, or
// removed a day after it was gone).
func claimWorker(ctx context.Context, st *store.Store, j *store.JobDetail) (*workerDoc, error) {
	if j.ClaimedBy.String == "" || (j.Status != store.StatusRunning && j.Status != store.StatusBuilding) {
		return nil, nil
	}
	w, err := st.Worker(ctx, j.ClaimedBy.String)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	d := workerDocOf(w)
	return &d, nil
}
