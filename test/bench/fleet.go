package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

// fleet (issue 20): what N supervisors cost the database, on a private
// PostgreSQL cluster the bench starts itself (initdb of the installed
// server, max_connections raised), so that the server's transaction
// counters and CPU are the fleet's alone. Per N it reports runs/s,
// transactions and server CPU per run of a batch, the idle transactions/s,
// transactions and server CPU per run inserted alone (and its pickup),
// peak connections and the false "lease lost" warnings.
func (b *bench) fleet(ctx context.Context, backend string) ([]row, error) {
	if backend != "postgres" {
		b.logf("fleet/%s: PostgreSQL only (it reads the server's counters); nothing to do", backend)
		return nil, nil
	}
	sizes, batch, alone, idle := []int{1, 4, 16, 64}, 1000, 30, 20*time.Second
	if b.opts.quick {
		sizes, batch, alone, idle = []int{1, 4}, 40, 5, 3*time.Second
	}
	pg, err := b.startCluster(ctx, 64*12+50)
	if err != nil {
		return nil, err
	}
	defer pg.stop()
	saved := b.opts.pgAdmin
	b.opts.pgAdmin = pg.AdminURL
	defer func() { b.opts.pgAdmin = saved }()

	var rows []row
	perRunAlone := map[int][2]float64{}
	for _, n := range sizes {
		got, err := b.fleetOnce(ctx, pg, n, batch, alone, idle)
		if err != nil {
			return rows, fmt.Errorf("N=%d: %w", n, err)
		}
		b.logf("fleet N=%d: %+v", n, got)
		perRunAlone[n] = [2]float64{got.aloneXact, got.aloneCPU}
		p := fmt.Sprintf("N=%d: ", n)
		rows = append(rows,
			row{"fleet", backend, p + "runs/s (batch, concurrency 2 each)", []float64{got.runsPerSec}, reference(""), nil},
			row{"fleet", backend, p + "transactions/run (batch)", []float64{got.xactPerRun}, reference(""), nil},
			row{"fleet", backend, p + "server CPU ms/run (batch)", []float64{got.cpuPerRun}, reference(""), nil},
			row{"fleet", backend, p + "idle transactions/s, all supervisors", []float64{got.idleXact}, reference(""), nil},
			row{"fleet", backend, p + "idle transactions/s per supervisor", []float64{got.idleXact / float64(n)}, below(0.3), nil},
			row{"fleet", backend, p + "transactions per run inserted alone", []float64{got.aloneXact}, reference(""), nil},
			row{"fleet", backend, p + "server CPU ms per run inserted alone", []float64{got.aloneCPU}, reference(""), nil},
			row{"fleet", backend, p + "pickup ms p50, run inserted alone", []float64{got.pickupP50}, below(5), nil},
			row{"fleet", backend, p + "peak connections", []float64{got.peakConns}, reference(""), nil},
			row{"fleet", backend, p + "false lease-lost warnings", []float64{got.leaseLost}, below(0), nil},
		)
	}
	first, last := sizes[0], sizes[len(sizes)-1]
	if a, z := perRunAlone[first], perRunAlone[last]; a[0] > 0 && a[1] > 0 {
		rows = append(rows,
			row{"fleet", backend, fmt.Sprintf("transactions per run alone, N=%d / N=%d", last, first), []float64{z[0] / a[0]}, below(1.5), nil},
			row{"fleet", backend, fmt.Sprintf("server CPU per run alone, N=%d / N=%d", last, first), []float64{z[1] / a[1]}, below(1.5), nil})
	}
	return rows, nil
}

// fleetResult is one N's figures.
type fleetResult struct {
	runsPerSec, xactPerRun, cpuPerRun float64
	idleXact                          float64 // transactions/s of the idle fleet
	aloneXact, aloneCPU, pickupP50    float64
	peakConns, leaseLost              float64
}

// statsSettle is how long PostgreSQL may take to publish a backend's
// transaction counts: a backend that flushed less than a second ago
// flushes again only after 10 s idle (PGSTAT_IDLE_INTERVAL).
const statsSettle = 11 * time.Second

func (b *bench) fleetOnce(ctx context.Context, pg *cluster, n, batch, alone int, idle time.Duration) (res fleetResult, err error) {
	w, err := b.newReadyWorld(ctx, "postgres", fmt.Sprintf("fleet%d", n), b.noopEnv)
	if err != nil {
		return res, err
	}
	defer w.close()
	dbName := strings.TrimPrefix(strings.SplitN(strings.SplitN(w.env["ADE_DATABASE_URL"], "?", 2)[0], "/", 4)[3], "/")

	// Peak connections, sampled through the maintenance database while
	// the fleet lives.
	peakCtx, stopPeak := context.WithCancel(ctx)
	peakDone := make(chan int)
	go func() {
		peak := 0
		for peakCtx.Err() == nil {
			var c int
			if pg.db.QueryRowContext(peakCtx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, dbName).Scan(&c) == nil {
				peak = max(peak, c)
			}
			_ = sleepCtx(peakCtx, 100*time.Millisecond)
		}
		peakDone <- peak
	}()
	sups := make([]*supervisorProc, 0, n)
	defer func() {
		stopAll(sups)
		stopPeak()
		res.peakConns = float64(<-peakDone)
		lost := 0
		for _, s := range sups {
			data, _ := os.ReadFile(s.logPath)
			lost += bytes.Count(data, []byte("lease lost"))
		}
		res.leaseLost = float64(lost)
	}()
	for range n {
		s, err := w.start(ctx, 2)
		if err != nil {
			return res, err
		}
		sups = append(sups, s)
	}

	// Idle: after the start-up settles, the fleet's transactions/s.
	if err := sleepCtx(ctx, 2*time.Second+statsSettle); err != nil {
		return res, err
	}
	m0, err := pg.mark(ctx, dbName)
	if err != nil {
		return res, err
	}
	if err := sleepCtx(ctx, idle); err != nil {
		return res, err
	}
	m1, err := pg.mark(ctx, dbName)
	if err != nil {
		return res, err
	}
	idleSecs := m1.at.Sub(m0.at).Seconds()
	res.idleXact = float64(m1.xact-m0.xact) / idleSecs
	idleCPU := float64(m1.ticks-m0.ticks) / idleSecs // ticks/s

	// Runs inserted alone: one at a time, each well after the last ended.
	// The idle fleet's own share over the window is taken off, and so are
	// the bench's reads; the insert counts (it is the run's).
	m0, err = pg.mark(ctx, dbName)
	if err != nil {
		return res, err
	}
	tag := store.NewID()
	var own int64
	var pickups []float64
	for range alone {
		ids, err := w.enqueue(ctx, tag, 1, noopInput)
		if err != nil {
			return res, err
		}
		if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
			return res, err
		}
		for {
			var r []runRow
			own++
			if err := w.query(ctx, &r, `SELECT id, status, error_message, created_at, started_at, completed_at FROM runs WHERE id = ?`, ids[0]); err != nil {
				return res, err
			}
			if len(r) == 1 && r[0].Status == "succeeded" {
				pickups = append(pickups, ms(r[0].StartedAt.Sub(r[0].CreatedAt.Time)))
				break
			}
			if len(r) == 1 && r[0].Status != "queued" && r[0].Status != "running" {
				return res, fmt.Errorf("run %s %s: %s", r[0].ID, r[0].Status, r[0].ErrorMessage.String)
			}
			if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
				return res, err
			}
		}
	}
	if m1, err = pg.settledMark(ctx, dbName); err != nil {
		return res, err
	}
	secs := m1.at.Sub(m0.at).Seconds()
	res.aloneXact = (float64(m1.xact-m0.xact) - float64(own) - res.idleXact*secs) / float64(alone)
	res.aloneCPU = (float64(m1.ticks-m0.ticks) - idleCPU*secs) / b.clkTck * 1000 / float64(alone)
	sortFloats(pickups)
	res.pickupP50 = percentile(pickups, 50)

	// A batch: every supervisor busy.
	m0, err = pg.mark(ctx, dbName)
	if err != nil {
		return res, err
	}
	tag = store.NewID()
	if _, err := w.enqueue(ctx, tag, batch, noopInput); err != nil {
		return res, err
	}
	polls := int64(0)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var pending int64
		polls++
		if err := w.query(ctx, &pending, `SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')`); err != nil {
			return res, err
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("batch of %d runs not done within 10 minutes", batch)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return res, err
		}
	}
	if m1, err = pg.settledMark(ctx, dbName); err != nil {
		return res, err
	}
	rows, err := w.batchRows(ctx, tag)
	if err != nil {
		return res, err
	}
	if len(rows) != batch {
		return res, fmt.Errorf("batch has %d runs, want %d", len(rows), batch)
	}
	firstCreated, lastDone := rows[0].CreatedAt.Time, rows[0].CompletedAt.Time
	for _, r := range rows {
		if r.Status != "succeeded" {
			return res, fmt.Errorf("run %s %s: %s", r.ID, r.Status, r.ErrorMessage.String)
		}
		firstCreated = minTime(firstCreated, r.CreatedAt.Time)
		lastDone = maxTime(lastDone, r.CompletedAt.Time)
	}
	res.runsPerSec = float64(batch) / lastDone.Sub(firstCreated).Seconds()
	res.xactPerRun = float64(m1.xact-m0.xact-polls) / float64(batch)
	res.cpuPerRun = float64(m1.ticks-m0.ticks) / b.clkTck * 1000 / float64(batch)
	return res, nil
}

// stopAll stops the supervisors at once (SIGTERM each, then wait).
func stopAll(sups []*supervisorProc) {
	var wg sync.WaitGroup
	for _, s := range sups {
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.stop() }()
	}
	wg.Wait()
}

// cluster is a private PostgreSQL server the bench started, with a handle
// on its maintenance database for the counters.
type cluster struct {
	*pgtemp.Cluster
	db *sql.DB
}

// startCluster starts a cluster of the installed server on a free port
// (pgtemp.StartCluster) with maxConns connections.
func (b *bench) startCluster(ctx context.Context, maxConns int) (*cluster, error) {
	pg, err := pgtemp.StartCluster(ctx, "max_connections="+strconv.Itoa(maxConns), "shared_buffers=128MB")
	if err != nil {
		return nil, err
	}
	b.logf("fleet: private PostgreSQL on port %d, max_connections %d", pg.Port, maxConns)
	db, err := sql.Open("pgx", pg.AdminURL)
	if err != nil {
		pg.Stop()
		return nil, err
	}
	return &cluster{Cluster: pg, db: db}, nil
}

func (c *cluster) stop() {
	c.db.Close()
	c.Stop()
}

// clusterMark is the server's transaction count of one database and the
// CPU ticks of the whole server (postmaster and all its children) at a
// moment.
type clusterMark struct {
	at    time.Time
	xact  int64
	ticks uint64
}

// settledMark is mark once the server has published the counts of what
// just happened (statsSettle).
func (c *cluster) settledMark(ctx context.Context, dbName string) (clusterMark, error) {
	if err := sleepCtx(ctx, statsSettle); err != nil {
		return clusterMark{}, err
	}
	return c.mark(ctx, dbName)
}

func (c *cluster) mark(ctx context.Context, dbName string) (m clusterMark, err error) {
	m.at = time.Now()
	// Read through the maintenance database: not counted in dbName's.
	err = c.db.QueryRowContext(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1`, dbName).Scan(&m.xact)
	if err != nil {
		return m, fmt.Errorf("read pg_stat_database: %w", err)
	}
	m.ticks, err = treeTicks(c.Pid())
	return m, err
}

// treeTicks sums the CPU ticks of pid and of every process whose parent it
// is (a PostgreSQL server's backends and background workers).
func treeTicks(pid int) (uint64, error) {
	t, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	sum := t.self() + t.children()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		if ppid, err := readPPID(child); err == nil && ppid == pid {
			if ct, err := readStat(child); err == nil {
				sum += ct.self()
			}
		}
	}
	return sum, nil
}

func readPPID(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if i < 0 || len(f) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strconv.Atoi(f[1])
}
