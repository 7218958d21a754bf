package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/ade-org/ade-worker/pkg/jobrunner"
	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/test/procmem"
)

// jobrunnerShare: the jobrunner's part of a run's cost, measured apart from
// the supervisor and the database. One serving jobrunner (as the supervisor
// keeps one per slot) is handed n engine-realistic run specs one after
// another; its own CPU per job is read from /proc before it exits, and the
// CPU of the engines it reaped is its children's. The engine alone runs the
// same n times, one at a time, in the same repeat. One job at a time keeps
// both figures free of the other slot's contention, so the difference is
// steadier than engine-realistic's (which measures all of it at c=2).
// No database takes part: it runs once whatever --backend says.
func (b *bench) jobrunnerShare(ctx context.Context, backend string) ([]row, error) {
	if backend != b.opts.backends[0] {
		return nil, nil
	}
	rw, err := b.realisticWorld(ctx, "sqlite", "jobrunner")
	if err != nil {
		return nil, err
	}
	n, venv, content, w := rw.n, rw.venv, rw.content, rw.w
	defer w.close()
	template, err := w.specTemplateOf(ctx, content)
	if err != nil {
		return nil, err
	}
	var own, under, alone, share []float64
	for rep := 1; rep <= b.opts.repeat; rep++ {
		engineMs, _, err := b.engineAlone(ctx, venv, content, n, 1)
		if err != nil {
			return nil, fmt.Errorf("engine alone: %w", err)
		}
		ownMs, underMs, err := b.serveJobs(ctx, template, n)
		if err != nil {
			return nil, err
		}
		b.logf("jobrunner rep %d: %d jobs, own %.2f ms CPU/job, engine under it %.1f ms, engine alone %.1f ms",
			rep, n, ownMs, underMs, engineMs)
		own, under, alone = append(own, ownMs), append(under, underMs), append(alone, engineMs)
		share = append(share, ownMs+underMs-engineMs)
	}
	wl := "jobrunner"
	return []row{
		{wl, "none", fmt.Sprintf("serving jobrunner's own CPU ms/job (%d engine-realistic runs, c=1)", n), own, target{}, nil},
		{wl, "none", "engine CPU ms/run under the jobrunner (sandboxed, c=1)", under, target{}, nil},
		{wl, "none", "engine alone CPU ms/run (c=1)", alone, target{}, nil},
		{wl, "none", "jobrunner's share ms/run (own + engine under it − alone)", share, target{}, nil},
	}, nil
}

// serveJobs hands one serving jobrunner n copies of template, each with its
// own job id and run folder, waiting for each result before the next spec,
// and returns its own CPU and its engines' CPU per job.
func (b *bench) serveJobs(ctx context.Context, template *jobspec.Spec, n int) (ownMs, childMs float64, err error) {
	dir, err := os.MkdirTemp(b.tmp, "serve-")
	if err != nil {
		return 0, 0, err
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	renewR, renewW, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	defer renewW.Close()
	cmd := exec.CommandContext(ctx, filepath.Join(b.bin, "jobrunner"), jobrunner.ServeArg)
	cmd.Stdin, cmd.ExtraFiles = specR, []*os.File{renewR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	err = cmd.Start()
	specR.Close()
	renewR.Close()
	if err != nil {
		specW.Close()
		return 0, 0, err
	}
	defer func() {
		specW.Close()
		if werr := cmd.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("serving jobrunner: %v: %s", werr, oneLine(stderr.String(), 300))
		}
	}()
	results := bufio.NewReader(out)
	for i := range n {
		job, err := jobOf(template, dir)
		if err != nil {
			return 0, 0, err
		}
		if _, err := specW.Write(job); err != nil {
			return 0, 0, fmt.Errorf("job %d: send the spec: %w", i, err)
		}
		line, err := results.ReadBytes('\n')
		if err != nil {
			return 0, 0, fmt.Errorf("job %d: read the result: %w (%s)", i, err, oneLine(stderr.String(), 300))
		}
		res, err := jobspec.DecodeResult(bytes.TrimSpace(line))
		if err != nil {
			return 0, 0, fmt.Errorf("job %d: %w", i, err)
		}
		if res.Status != jobspec.StatusSucceeded {
			return 0, 0, fmt.Errorf("job %d: %s: %s", i, res.Status, res.Error)
		}
	}
	// Read while it still lives: its own CPU is gone once it is reaped.
	cpu, err := procmem.CPU(cmd.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	perJob := func(ticks uint64) float64 { return float64(ticks) / b.clkTck * 1000 / float64(n) }
	return perJob(cpu.Self()), perJob(cpu.Children()), nil
}
