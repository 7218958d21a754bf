package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/cliusage"
	"github.com/ade-org/ade-worker/pkg/store"
)

func cancelCmd() *cli.Command {
	return &cli.Command{
		Name:  "cancel",
		Usage: "cancel a queued or running run or build, writing its row as the ADE API does",
		Description: `Sets status 'cancelled' (with cancelled_at and completed_at for a run,
finished_at for a build) and clears the claim. A queued job is then never
claimed; the supervisor running a running job stops its processes within a
second or two and writes nothing more about it. Works from any host that
reaches the database. A finished job is refused.`,
		ArgsUsage: "run|build ID",
		Before: func(c *cli.Context) error {
			_, _, err := jobArgs(c)
			return err
		},
		Action: withStore(cancelJob),
	}
}

func cancelJob(c *cli.Context, e *env) error {
	kind, id, err := jobArgs(c)
	if err != nil {
		return err
	}
	was, err := e.store.CancelJob(c.Context, kind, id)
	if errors.Is(err, store.ErrNotCancellable) {
		return fmt.Errorf("%s %s is already %s: only queued or running jobs can be cancelled", kind, id, was)
	}
	if err != nil {
		return err
	}
	fmt.Printf("%s %s cancelled (it was %s)\n", kind, id, was)
	if kind == store.KindBuild {
		// Its queued runs can never start: fail them now, as the
		// supervisor does for a failed build.
		n, err := e.store.FailRunsOfFailedBuilds(c.Context)
		if err != nil {
			return fmt.Errorf("the build is cancelled, but failing its queued runs did not work (cleanup will): %w", err)
		}
		if n > 0 {
			fmt.Printf("%d queued run(s) of cancelled or failed builds failed: %s\n", n, store.MsgBuildFailedBefore)
		}
	}
	return nil
}

// jobArgs reads the arguments "run|build ID".
func jobArgs(c *cli.Context) (store.Kind, string, error) {
	kind, id := store.Kind(c.Args().Get(0)), c.Args().Get(1)
	if (kind != store.KindRun && kind != store.KindBuild) || id == "" || c.Args().Len() != 2 {
		return "", "", cliusage.Errorf(c, "want two arguments, run|build and the job's ID")
	}
	return kind, id, nil
}
