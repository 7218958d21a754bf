package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/supervisor"
	"github.com/ade-org/ade-worker/pkg/telemetry"
)

// queueStatsEvery bounds how often a scrape reads the queue gauges from the
// database.
const queueStatsEvery = 5 * time.Second

// serveTelemetry starts the /livez, /readyz and /metrics server when
// ADE_WORKER_HTTP_ADDR is set, and makes the supervisor report to its
// metrics; the returned function stops it.
func serveTelemetry(e *env, sup *supervisor.Supervisor) (func(), error) {
	if e.cfg.HTTPAddr == "" {
		return func() {}, nil
	}
	m := telemetry.NewMetrics(telemetry.Info{Version: version, Database: e.store.Dialect(), Concurrency: e.cfg.Concurrency},
		supervisor.QueueReader(e.store), queueStatsEvery)
	m.WatchHealth(sup.Health())
	m.WatchPauses(supervisor.PauseReader(e.store), queueStatsEvery)
	sup.SetObserver(m)
	e.metrics = m
	srv, err := telemetry.Serve(e.cfg.HTTPAddr, sup.Health(), m.Registry())
	if err != nil {
		return nil, err
	}
	e.log.Info().Str("addr", srv.Addr()).Msg("serving /livez, /readyz and /metrics")
	return func() {
		if err := srv.Close(); err != nil {
			e.log.Warn().Err(err).Msg("health and metrics server did not stop cleanly")
		}
	}, nil
}

func healthCmd() *cli.Command {
	return &cli.Command{
		Name:  "health",
		Usage: "exit 0 when the local supervisor's /readyz answers 200, else 1 (for Docker and Compose healthchecks)",
		Description: `Asks http://127.0.0.1:PORT/readyz, PORT from ADE_WORKER_HTTP_ADDR (--http-addr),
and prints the answer. It does not open the database.`,
		Flags: []cli.Flag{&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "give up after this long"}},
		Action: func(c *cli.Context) error {
			return checkHealth(c.Context, httpAddr(c), c.Duration("timeout"), os.Stdout)
		},
	}
}

// httpAddr reads --http-addr / ADE_WORKER_HTTP_ADDR without the other
// settings: a health check must not fail on, say, a missing Python.
func httpAddr(c *cli.Context) string {
	for _, ctx := range c.Lineage() {
		if ctx.IsSet("http-addr") {
			return ctx.String("http-addr")
		}
	}
	return os.Getenv("ADE_WORKER_HTTP_ADDR")
}

func checkHealth(ctx context.Context, addr string, timeout time.Duration, out io.Writer) error {
	url, err := telemetry.ProbeURL(addr)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cli.Exit(fmt.Sprintf("not healthy: %s does not answer: %v", url, err), 1)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(out, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return cli.Exit(fmt.Sprintf("not ready: %s answered %s", url, resp.Status), 1)
	}
	return nil
}
