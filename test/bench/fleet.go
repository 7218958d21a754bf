package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/ade-org/ade-worker/pkg/procs"
	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
	"github.com/ade-org/ade-worker/test/procmem"
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
	// idle: one 30 s safety claim of every supervisor falls in it.
	sizes, batch, alone, idle := []int{1, 4, 16, 64}, 1000, 30, 30*time.Second
	if b.opts.quick {
		sizes, batch, alone, idle = []int{1, 4}, 40, 5, 3*time.Second
	}
	if len(b.opts.fleetSizes) > 0 {
		sizes = b.opts.fleetSizes
	}
	pg, err := b.startCluster(ctx, maxFleet*12+50)
	if err != nil {
		return nil, err
	}
	defer pg.stop()
	saved := b.opts.pgAdmin
	b.opts.pgAdmin = pg.AdminURL
	defer func() { b.opts.pgAdmin = saved }()

	var rows []row
	perRunAlone := map[int][2]aloneResult{} // cold, warm
	for _, n := range sizes {
		got, err := b.fleetOnce(ctx, pg, n, batch, alone, idle)
		if err != nil {
			return rows, fmt.Errorf("N=%d: %w", n, err)
		}
		b.logf("fleet N=%d: %+v", n, got)
		perRunAlone[n] = [2]aloneResult{got.cold, got.warm}
		p := fmt.Sprintf("N=%d: ", n)
		rows = append(rows,
			row{"fleet", backend, p + "runs/s (batch, concurrency 2 each)", []float64{got.runsPerSec}, reference(""), nil},
			row{"fleet", backend, p + "transactions/run (batch)", []float64{got.xactPerRun}, reference(""), nil},
			row{"fleet", backend, p + "server CPU ms/run (batch)", []float64{got.cpuPerRun}, reference(""), nil},
			row{"fleet", backend, p + "idle transactions/s, all supervisors", []float64{got.idleXact}, reference(""), nil},
			row{"fleet", backend, p + "idle transactions/s per supervisor", []float64{got.idleXact / float64(n)}, below(0.3), nil},
			row{"fleet", backend, p + "transactions per run inserted alone (cold)", []float64{got.cold.xact}, reference(""), nil},
			row{"fleet", backend, p + "server CPU ms per run inserted alone (cold)", []float64{got.cold.cpu}, reference(""), nil},
			row{"fleet", backend, p + "pickup ms p50, run inserted alone (cold)", []float64{got.cold.pickupP50}, below(5), nil},
			row{"fleet", backend, p + "transactions per run inserted alone (warm)", []float64{got.warm.xact}, reference(""), nil},
			row{"fleet", backend, p + "server CPU ms per run inserted alone (warm)", []float64{got.warm.cpu}, reference(""), nil},
			row{"fleet", backend, p + "pickup ms p50, run inserted alone (warm)", []float64{got.warm.pickupP50}, below(5), nil},
			row{"fleet", backend, p + "NOTIFY to LISTEN ms p50, fleet listening (server's floor)", []float64{got.notifyP50}, reference(""), nil},
			row{"fleet", backend, p + "server CPU ms per NOTIFY, fleet listening", []float64{got.notifyCPU}, reference(""), nil},
			row{"fleet", backend, p + "peak connections", []float64{got.peakConns}, reference(""), nil},
			row{"fleet", backend, p + "false lease-lost warnings", []float64{got.leaseLost}, below(0), nil},
		)
	}
	first, last := sizes[0], sizes[len(sizes)-1]
	// The target holds for a fleet that has been up a while (warm); the
	// cold figures add each connection's first plans, a cost once per
	// connection and statement that more supervisors spread over more
	// connections.
	a, z := perRunAlone[first], perRunAlone[last]
	for i, phase := range []string{"cold", "warm"} {
		if first == last || min(a[i].xact, a[i].cpu, z[i].xact, z[i].cpu) <= 0 {
			continue
		}
		t := reference("")
		if phase == "warm" {
			t = below(1.5)
		}
		rows = append(rows,
			row{"fleet", backend, fmt.Sprintf("transactions per run alone (%s), N=%d / N=%d", phase, last, first), []float64{z[i].xact / a[i].xact}, t, nil},
			row{"fleet", backend, fmt.Sprintf("server CPU per run alone (%s), N=%d / N=%d", phase, last, first), []float64{z[i].cpu / a[i].cpu}, t, nil})
	}
	return rows, nil
}

// maxFleet is the most supervisors the fleet workload starts: its
// cluster's max_connections is sized for it.
const maxFleet = 64

// fleetResult is one N's figures.
type fleetResult struct {
	runsPerSec, xactPerRun, cpuPerRun float64
	idleXact                          float64     // transactions/s of the idle fleet
	cold, warm                        aloneResult // runs inserted alone
	notifyP50, notifyCPU              float64     // PostgreSQL's own wake-up, the fleet listening
	peakConns, leaseLost              float64
}

// statsSettle is how long PostgreSQL may take to publish a backend's
// transaction counts: a backend that flushed less than a second ago
// flushes again only after 10 s idle (PGSTAT_IDLE_INTERVAL).
const statsSettle = 11 * time.Second

// quickSettle stands in for statsSettle in a smoke run (--quick): its
// counts may miss the last second's transactions, which a smoke run,
// there only to keep the workload working, does not mind (3 settles of
// 11 s were most of the CI bench phase).
const quickSettle = 2 * time.Second

func (b *bench) fleetOnce(ctx context.Context, pg *cluster, n, batch, alone int, idle time.Duration) (res fleetResult, err error) {
	w, err := b.newReadyWorld(ctx, "postgres", fmt.Sprintf("fleet%d", n), b.noopEnv)
	if err != nil {
		return res, err
	}
	defer w.close()
	// The hourly gc's first pass comes a minute after each start: 64 of
	// them at once inside the measured phases (about 2 transactions each)
	// would read as a cost of the runs inserted alone.
	w.env["ADE_WORKER_GC_INTERVAL"] = "0"
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

	// The bench's polls go through a connection of their own, whose
	// backend is left out of the server's CPU; the inserts go through the
	// world's, whose backend runs the queue's trigger and is counted.
	poll, pollPid, err := w.pollConn(ctx)
	if err != nil {
		return res, err
	}
	defer poll.Close()
	skip := map[int]bool{pg.adminPid: true, pollPid: true}
	serverCPU := func() (cpuByClass, error) { return classNanos(pg.Pid(), skip, nil, b.clkTck) }

	// Idle: after the start-up settles, the fleet's transactions/s.
	if err := sleepCtx(ctx, 2*time.Second+pg.settle); err != nil {
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

	// Runs inserted alone, cold: the fleet just started, so its
	// connections have no plans cached yet (PostgreSQL plans a prepared
	// statement anew for its first five executions on each connection).
	if res.cold, err = b.runsAlone(ctx, pg, w, poll, skip, dbName, n, alone, res.idleXact, "cold"); err != nil {
		return res, err
	}
	if res.notifyP50, res.notifyCPU, err = notifyRoundTrip(ctx, w.env["ADE_DATABASE_URL"], alone, serverCPU); err != nil {
		return res, err
	}

	// A batch: every supervisor busy.
	m0, err = pg.mark(ctx, dbName)
	if err != nil {
		return res, err
	}
	tag := store.NewID()
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

	// Runs inserted alone again, warm: the batch ran on every
	// supervisor's connections, as a fleet that has been up a while.
	if res.warm, err = b.runsAlone(ctx, pg, w, poll, skip, dbName, n, alone, res.idleXact, "warm"); err != nil {
		return res, err
	}
	return res, nil
}

// aloneResult is what runs inserted alone cost, each beyond the idle fleet.
type aloneResult struct{ xact, cpu, pickupP50 float64 }

// runsAlone inserts runs one at a time, each well after the last ended,
// and measures each against a quiet window before it. The idle fleet's
// transactions over the phase are taken off, and so are the bench's reads;
// the insert counts (it is the run's).
func (b *bench) runsAlone(ctx context.Context, pg *cluster, w *world, poll *sql.DB, skip map[int]bool, dbName string,
	n, alone int, idleXact float64, phase string) (res aloneResult, err error) {
	m0, err := pg.mark(ctx, dbName)
	if err != nil {
		return res, err
	}
	tag := store.NewID()
	var own int64
	var pickups, cpuEach []float64
	var lastTook time.Duration
	classOf, err := backendClasses(ctx, poll)
	if err != nil {
		return res, err
	}
	byClass := cpuByClass{} // summed over the runs, each beyond its quiet window
	read := func() (cpuByClass, error) { return classNanos(pg.Pid(), skip, classOf, b.clkTck) }
	for range alone {
		// A quiet window as long as the last run took, then the run: the
		// difference is the run's server CPU, robust to the idle fleet's
		// bursts (see cpuBeyondQuiet).
		quiet := 400 * time.Millisecond
		if len(pickups) > 0 {
			quiet = lastTook
		}
		beyond, took, err := cpuBeyondQuiet(ctx, read, quiet, func() error {
			ids, err := w.enqueue(ctx, tag, 1, noopInput)
			if err != nil {
				return err
			}
			if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
				return err
			}
			for {
				var status, problem string
				var created, started sql.NullTime
				own++
				err := poll.QueryRowContext(ctx, `SELECT status, COALESCE(error_message, ''), created_at, started_at FROM runs WHERE id = $1`, ids[0]).
					Scan(&status, &problem, &created, &started)
				if err != nil {
					return fmt.Errorf("poll run %s: %w", ids[0], err)
				}
				if status == "succeeded" {
					pickups = append(pickups, ms(started.Time.Sub(created.Time)))
					return nil
				}
				if status != "queued" && status != "running" {
					return fmt.Errorf("run %s %s: %s", ids[0], status, problem)
				}
				if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
					return err
				}
			}
		})
		if err != nil {
			return res, err
		}
		lastTook = took
		cpuEach = append(cpuEach, beyond.sum()/1e6)
		byClass.add(beyond)
	}
	b.logf("fleet N=%d: server CPU ms per run inserted alone (%s), by process (mean; quiet windows taken off): %s", n, phase, byClass.perRun(alone))
	m1, err := pg.settledMark(ctx, dbName)
	if err != nil {
		return res, err
	}
	secs := m1.at.Sub(m0.at).Seconds()
	res.xact = (float64(m1.xact-m0.xact) - float64(own) - idleXact*secs) / float64(alone)
	sortFloats(cpuEach)
	res.cpu = percentile(cpuEach, 50)
	sortFloats(pickups)
	res.pickupP50 = percentile(pickups, 50)
	return res, nil
}

// notifyRoundTrip is the p50 of samples notifications from one connection
// to another on a channel nobody else listens to, while the fleet's LISTEN
// connections are up, and the server's CPU per notification: no wake-up of
// a supervisor can be faster or cheaper. PostgreSQL (15 here) signals
// every listening backend of the database for any notification and each
// one checks the channel itself, so both grow with the number of sessions
// that listen, though only one is woken.
//
// The CPU is the median over samples of cpuBeyondQuiet, windows of 50 ms.
func notifyRoundTrip(ctx context.Context, rawURL string, samples int, serverCPU func() (cpuByClass, error)) (p50, cpuMs float64, err error) {
	u, err := settings.ParseDatabaseURL(rawURL)
	if err != nil {
		return 0, 0, err
	}
	listener, err := pgx.Connect(ctx, u.DSN)
	if err != nil {
		return 0, 0, err
	}
	defer listener.Close(ctx)
	sender, err := pgx.Connect(ctx, u.DSN)
	if err != nil {
		return 0, 0, err
	}
	defer sender.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN ade_bench_floor"); err != nil {
		return 0, 0, err
	}
	const window = 50 * time.Millisecond
	var got, extra []float64
	for range samples {
		beyond, _, err := cpuBeyondQuiet(ctx, serverCPU, window, func() error {
			sent := time.Now()
			if _, err := sender.Exec(ctx, "SELECT pg_notify('ade_bench_floor', '')"); err != nil {
				return err
			}
			waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := listener.WaitForNotification(waitCtx)
			cancel()
			if err != nil {
				return fmt.Errorf("NOTIFY round trip: %w", err)
			}
			took := time.Since(sent)
			got = append(got, ms(took))
			return sleepCtx(ctx, window-took)
		})
		if err != nil {
			return 0, 0, err
		}
		extra = append(extra, beyond.sum()/1e6)
	}
	sortFloats(got)
	sortFloats(extra)
	return percentile(got, 50), percentile(extra, 50), nil
}

// cpuBeyondQuiet is the server CPU in nanoseconds, by kind of process,
// that event's window used beyond a quiet window of length quiet just
// before it, scaled to the event's length, and how long the event took.
// The medians of such pairs are robust to the idle fleet's bursts (64
// supervisors' safety claims land together every 30 s), which swamped a
// difference of rates over a phase.
func cpuBeyondQuiet(ctx context.Context, read func() (cpuByClass, error), quiet time.Duration, event func() error) (cpuByClass, time.Duration, error) {
	n0, err := read()
	if err != nil {
		return nil, 0, err
	}
	if err := sleepCtx(ctx, quiet); err != nil {
		return nil, 0, err
	}
	n1, err := read()
	if err != nil {
		return nil, 0, err
	}
	at := time.Now()
	if err := event(); err != nil {
		return nil, 0, err
	}
	took := time.Since(at)
	n2, err := read()
	if err != nil {
		return nil, 0, err
	}
	scale := took.Seconds() / quiet.Seconds()
	beyond := cpuByClass{}
	for _, n := range []cpuByClass{n0, n1, n2} { // a class may come or go (a backend begun or ended)
		for k := range n {
			beyond[k] = (n2[k] - n1[k]) - (n1[k]-n0[k])*scale
		}
	}
	return beyond, took, nil
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
	db       *sql.DB
	adminPid int           // db's backend
	settle   time.Duration // statsSettle, or quickSettle
}

// startCluster starts a cluster of the installed server on a free port
// (pgtemp.StartCluster) with maxConns connections.
func (b *bench) startCluster(ctx context.Context, maxConns int) (*cluster, error) {
	settings := []string{"max_connections=" + strconv.Itoa(maxConns), "shared_buffers=128MB"}
	// For a diagnosis, e.g. "logging_collector=on log_directory=/tmp/fleetlog
	// log_min_duration_statement=0": the cluster's own folder goes with it.
	settings = append(settings, strings.Fields(os.Getenv("ADE_BENCH_PG_SETTINGS"))...)
	pg, err := pgtemp.StartCluster(ctx, settings...)
	if err != nil {
		return nil, err
	}
	b.logf("fleet: private PostgreSQL on port %d, max_connections %d", pg.Port, maxConns)
	db, err := sql.Open("pgx", pg.AdminURL)
	if err != nil {
		pg.Stop()
		return nil, err
	}
	// One connection, kept: its backend is the bench's, left out of the
	// server's CPU (classNanos).
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	c := &cluster{Cluster: pg, db: db, settle: statsSettle}
	if b.opts.quick {
		c.settle = quickSettle
	}
	if err := db.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&c.adminPid); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
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
// just happened (c.settle).
func (c *cluster) settledMark(ctx context.Context, dbName string) (clusterMark, error) {
	if err := sleepCtx(ctx, c.settle); err != nil {
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

// treeTicks sums the CPU ticks of pid and of its descendants (a
// PostgreSQL server's backends and background workers).
func treeTicks(pid int) (uint64, error) {
	t, err := procmem.CPU(pid)
	if err != nil {
		return 0, err
	}
	return t.Self() + t.Children() + liveDescendantTicks(pid), nil
}

// liveDescendantTicks sums the CPU ticks of pid's live descendants, each
// with the children it reaped (the engines a serving jobrunner ran): what
// has not reached pid's own count of its children yet.
func liveDescendantTicks(pid int) uint64 {
	var sum uint64
	for _, d := range procs.Descendants(pid) {
		if t, err := procmem.CPU(d); err == nil {
			sum += t.Self() + t.Children()
		}
	}
	return sum
}

// pollConn is a connection of its own to the world's database, for the
// bench's reads, and its backend's pid.
func (w *world) pollConn(ctx context.Context) (*sql.DB, int, error) {
	u, err := settings.ParseDatabaseURL(w.env["ADE_DATABASE_URL"])
	if err != nil {
		return nil, 0, err
	}
	db, err := sql.Open("pgx", u.DSN)
	if err != nil {
		return nil, 0, err
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	var pid int
	if err := db.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		db.Close()
		return nil, 0, err
	}
	return db, pid, nil
}

// cpuByClass is the server's CPU in nanoseconds by kind of process, to
// tell which part grows with the fleet.
type cpuByClass map[string]float64

func (c cpuByClass) sum() float64 {
	var sum float64
	for _, ns := range c {
		sum += ns
	}
	return sum
}

func (c cpuByClass) add(d cpuByClass) {
	for k, ns := range d {
		c[k] += ns
	}
}

func (c cpuByClass) perRun(runs int) string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, c[k]/1e6/float64(runs)))
	}
	return strings.Join(parts, ", ")
}

// backendClasses names the kind of each of the server's processes now:
// the supervisors' listening sessions and pools, other clients (the
// bench's inserts) and PostgreSQL's own background processes.
func backendClasses(ctx context.Context, db *sql.DB) (map[int]string, error) {
	supervisor := store.AppName("") // the prefix of every supervisor's application_name
	rows, err := db.QueryContext(ctx, `SELECT pid, COALESCE(backend_type, ''), COALESCE(application_name, ''), COALESCE(query, '')
	FROM pg_stat_activity`)
	if err != nil {
		return nil, fmt.Errorf("read the server's processes: %w", err)
	}
	defer rows.Close()
	classOf := map[int]string{}
	for rows.Next() {
		var pid int
		var kind, app, query string
		if err := rows.Scan(&pid, &kind, &app, &query); err != nil {
			return nil, err
		}
		switch {
		case kind != "client backend":
			classOf[pid] = kind
		case strings.HasPrefix(app, supervisor) && strings.Contains(strings.ToUpper(query), "LISTEN"):
			classOf[pid] = "supervisors' listening sessions"
		case strings.HasPrefix(app, supervisor):
			classOf[pid] = "supervisors' pools"
		default:
			classOf[pid] = "other clients (the inserts)"
		}
	}
	return classOf, rows.Err()
}

// classNanos is the server's CPU time in nanoseconds, for figures too
// small for ticks (a run inserted alone costs a few milliseconds, a tick
// is ten), by class (classOf): /proc/<pid>/schedstat of the postmaster and
// of each live child, plus the ticks of children that exited (the
// postmaster's cutime and cstime). The backends in skip (the bench's own
// connections) are left out. Processes not in classOf (all of them when
// it is nil) count as "new backends", the postmaster with its exited
// children as "postmaster and exited backends".
func classNanos(pid int, skip map[int]bool, classOf map[int]string, clkTck float64) (cpuByClass, error) {
	out := cpuByClass{}
	own, err := procmem.Schedstat(pid)
	if err != nil {
		return out, err
	}
	t, err := procmem.CPU(pid)
	if err != nil {
		return out, err
	}
	out["postmaster and exited backends"] = float64(own) + float64(t.Children())/clkTck*1e9
	for _, child := range procs.Descendants(pid) {
		if skip[child] {
			continue
		}
		ns, err := procmem.Schedstat(child)
		if err != nil {
			continue
		}
		class, ok := classOf[child]
		if !ok {
			class = "new backends"
		}
		out[class] += float64(ns)
	}
	return out, nil
}
