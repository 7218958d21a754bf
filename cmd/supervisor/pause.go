package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/store"
)

// pauseCmd and resumeCmd hold back and release queued work. The pause is a
// row in the database, so every supervisor honours it at its next claim
// (within one poll interval); running jobs go on.
func pauseCmd() *cli.Command {
	return &cli.Command{
		Name:  "pause",
		Usage: "stop claiming queued work: everything, one workspace or one configuration (running jobs go on)",
		Flags: pauseFlags(),
		Action: withStore(func(c *cli.Context, e *env) error {
			scope, target, err := pauseScope(c)
			if err != nil {
				return err
			}
			by, _ := os.Hostname()
			added, err := e.store.SetPause(c.Context, scope, target, by)
			if err != nil {
				return err
			}
			if !added {
				fmt.Printf("%s was paused already\n", pauseName(scope, target))
				return nil
			}
			fmt.Printf("paused %s: no supervisor claims its queued work until 'supervisor resume%s'\n",
				pauseName(scope, target), pauseArgs(scope, target))
			return nil
		}),
	}
}

func resumeCmd() *cli.Command {
	return &cli.Command{
		Name:  "resume",
		Usage: "undo a pause of everything, a workspace or a configuration",
		Flags: pauseFlags(),
		Action: withStore(func(c *cli.Context, e *env) error {
			scope, target, err := pauseScope(c)
			if err != nil {
				return err
			}
			removed, err := e.store.ClearPause(c.Context, scope, target)
			if err != nil {
				return err
			}
			if !removed {
				return fmt.Errorf("%s is not paused; 'supervisor status' lists the pauses", pauseName(scope, target))
			}
			fmt.Printf("resumed %s\n", pauseName(scope, target))
			return nil
		}),
	}
}

func pauseFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "workspace", Usage: "only this workspace `ID`"},
		&cli.StringFlag{Name: "configuration", Usage: "only this configuration `ID`"},
	}
}

// pauseScope reads the command's scope: no flag is everything.
func pauseScope(c *cli.Context) (store.PauseScope, string, error) {
	ws, cfg := c.String("workspace"), c.String("configuration")
	switch {
	case c.Args().Len() > 0:
		return "", "", fmt.Errorf("unexpected argument %q: name what to pause with --workspace ID or --configuration ID", c.Args().First())
	case ws != "" && cfg != "":
		return "", "", errors.New("give --workspace or --configuration, not both (pause each on its own)")
	case ws != "":
		return store.PauseWorkspace, ws, nil
	case cfg != "":
		return store.PauseConfiguration, cfg, nil
	}
	return store.PauseAll, "", nil
}

func pauseName(scope store.PauseScope, target string) string {
	if scope == store.PauseAll {
		return "everything"
	}
	return string(scope) + " " + target
}

func pauseArgs(scope store.PauseScope, target string) string {
	if scope == store.PauseAll {
		return ""
	}
	return " --" + string(scope) + " " + target
}

// pauseDoc is one pause in `status --json`.
type pauseDoc struct {
	Scope    store.PauseScope `json:"scope"`
	Target   string           `json:"target"`
	PausedAt *string          `json:"paused_at"`
	PausedBy string           `json:"paused_by"`
}

func pauseDocs(ps []store.Pause) []pauseDoc {
	out := []pauseDoc{}
	for _, p := range ps {
		out = append(out, pauseDoc{Scope: p.Scope, Target: p.Target, PausedAt: jsonTime(p.PausedAt), PausedBy: p.PausedBy})
	}
	return out
}

// writePauses prints the pauses for people (nothing when there are none).
func writePauses(w io.Writer, ps []store.Pause) {
	if len(ps) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PAUSED\tSINCE\tBY")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", pauseName(p.Scope, p.Target), p.PausedAt.Time.UTC().Format(time.RFC3339), p.PausedBy)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// printWorkspaces is `status --workspace W` and `status --by-workspace`.
func printWorkspaces(c *cli.Context, e *env) error {
	qs, err := e.store.WorkspaceQueues(c.Context, c.String("workspace"))
	if err != nil {
		return err
	}
	docs := workspaceDocs(qs)
	if ws := c.String("workspace"); ws != "" && len(docs) == 0 {
		docs = []workspaceDoc{{WorkspaceID: ws}} // nothing queued or running: zeros, not an error
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Workspaces []workspaceDoc `json:"workspaces"`
		}{docs})
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "WORKSPACE\tQUEUED\tCLAIMABLE\tRUNNING\tOLDEST CLAIMABLE")
	for _, d := range docs {
		age := "-"
		if d.OldestClaimableAgeSeconds != nil {
			age = (time.Duration(*d.OldestClaimableAgeSeconds * float64(time.Second))).Round(time.Second).String()
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\n", d.WorkspaceID, d.Queued, d.Claimable, d.Running, age)
	}
	return w.Flush()
}

// workspaceDoc is one workspace in `status --by-workspace --json`.
type workspaceDoc struct {
	WorkspaceID string `json:"workspace_id"`
	Queued      int64  `json:"queued"`
	Claimable   int64  `json:"claimable"`
	Running     int64  `json:"running"`
	// OldestClaimableAgeSeconds is on the database's clock; null when
	// nothing is claimable.
	OldestClaimableAgeSeconds *float64 `json:"oldest_claimable_age_seconds"`
}

func workspaceDocs(qs []store.WorkspaceQueue) []workspaceDoc {
	out := []workspaceDoc{}
	for _, q := range qs {
		d := workspaceDoc{WorkspaceID: q.WorkspaceID, Queued: q.Queued, Claimable: q.Claimable, Running: q.Running}
		if q.OldestClaimable.Valid && q.Now.Valid {
			age := max(q.Now.Sub(q.OldestClaimable.Time).Seconds(), 0)
			d.OldestClaimableAgeSeconds = &age
		}
		out = append(out, d)
	}
	return out
}
