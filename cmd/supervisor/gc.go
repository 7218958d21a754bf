package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/gc"
)

func gcCmd() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "remove old run folders, unused venvs and leftover build folders once (what the supervisor does every ADE_WORKER_GC_INTERVAL)",
		Description: `Takes the gc lock (one pass at a time across all supervisors), removes what
ADE_WORKER_RUN_ARTIFACT_TTL_DAYS and ADE_WORKER_VENV_TTL_DAYS allow, and lists
each folder with its size and a total. Never deletes a database row.`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "dry-run", Usage: "list what would be removed; remove nothing"}},
		Action: withStore(func(c *cli.Context, e *env) error {
			lay := e.layout()
			col := gc.New(e.store, lay, gc.PolicyFrom(e.cfg), e.log)
			res, err := col.Pass(c.Context, time.Now(), c.Bool("dry-run"))
			if err != nil {
				return fmt.Errorf("gc: %w", err)
			}
			if res.Skipped {
				return errors.New("gc: another gc pass holds the gc lock (a supervisor or another 'supervisor gc'); nothing was removed; try again when it ends")
			}
			if err := printGC(res); err != nil {
				return err
			}
			if n := res.NotRemoved(); n > 0 && !res.DryRun {
				return cli.Exit(fmt.Sprintf("gc: %d folders were not removed (see ERROR above)", n), 1)
			}
			return nil
		}),
	}
}

// printGC lists each folder and a total per target, bytes as numbers (for
// scripts) and in readable units.
func printGC(res *gc.Result) error {
	verb := "removed"
	if res.DryRun {
		verb = "would remove"
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ACTION\tTARGET\tBYTES\tPATH\tWHY")
	for _, it := range res.Items {
		action, why := verb, it.Detail
		if it.Err != nil {
			action, why = "NOT REMOVED", "ERROR: "+it.Err.Error()
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", action, it.Target, it.Bytes, it.Path, why)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	var total int64
	count := 0
	for _, t := range gc.Targets {
		n, b := res.Removed(t)
		fmt.Printf("%s %s: %d folders, %d bytes (%s)\n", verb, t, n, b, humanBytes(b))
		total += b
		count += n
	}
	fmt.Printf("total %s: %d folders, %d bytes (%s)\n", verb, count, total, humanBytes(total))
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
