package telemetry

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metric names follow one rule: ade_worker_, then the subsystem in the
// singular (job, queue, lease, db, gc), then what is measured, with the
// unit or _total last.

// Outcomes of a claimed job, the outcome label of
// ade_worker_job_finished_total and ade_worker_job_duration_seconds.
const (
	OutcomeSucceeded  = "succeeded"
	OutcomeFailed     = "failed"
	OutcomeRetried    = "retried"     // re-queued with backoff, attempt counted
	OutcomeTimedOut   = "timed_out"   // failed by its timeout (exit 124)
	OutcomeCancelled  = "cancelled"   // cancelled through the database
	OutcomeLeaseLost  = "lease_lost"  // another worker owns it, or its outcome could not be written in time
	OutcomeHandedBack = "handed_back" // re-queued at shutdown, attempt not counted
)

var outcomes = []string{OutcomeSucceeded, OutcomeFailed, OutcomeRetried, OutcomeTimedOut,
	OutcomeCancelled, OutcomeLeaseLost, OutcomeHandedBack}

// Observer is told what happens to jobs. The supervisor calls it from the
// claim path and each job's end; Nop is used when metrics are off.
type Observer interface {
	// JobClaimed: a job of kind was claimed after waiting (claimable ->
	// claimed) for wait; a run whose build was not ready when it was
	// queued also waited buildWait for that build first.
	JobClaimed(kind string, wait, buildWait time.Duration)
	// JobEnded: this worker is done with a job it claimed took ago.
	JobEnded(kind, outcome string, took time.Duration)
	// DBOp: a database operation op (claim, heartbeat, write, cleanup,
	// probe, queue_stats) ended, failed when err is not nil. Operations
	// stopped by the worker's own shutdown are not reported.
	DBOp(op string, err error)
	// LeasesExpired: cleanup found n jobs of kind whose lease had expired
	// and requeued or failed them (action).
	LeasesExpired(kind, action string, n int)
	// GCRemoved: the garbage collector removed n things of target
	// (run_folder, venv, build_tmp: pkg/gc's targets).
	GCRemoved(target string, n int)
	// Wakeups: instant wake-ups work (up) or polling took over.
	Wakeups(up bool)
	// JobrunnerStarted: a jobrunner process was started (each serves job
	// after job until one ends out of order or it has served its share).
	JobrunnerStarted()
}

// Nop is an Observer that records nothing.
type Nop struct{}

func (Nop) JobClaimed(string, time.Duration, time.Duration) {}
func (Nop) JobEnded(string, string, time.Duration)          {}
func (Nop) DBOp(string, error)                              {}
func (Nop) LeasesExpired(string, string, int)               {}
func (Nop) GCRemoved(string, int)                           {}
func (Nop) Wakeups(bool)                                    {}
func (Nop) JobrunnerStarted()                               {}

// Label values every series is made with at start, so each counter and
// gauge reads 0, not "no data", before its first event (and each histogram
// is listed, so dashboards and rules can be checked against a scrape).
var (
	kinds        = []string{"build", "run"}
	dbOps        = []string{"claim", "heartbeat", "beat", "write", "cleanup", "probe", "queue_stats", "pauses"}
	leaseActions = []string{"requeued", "failed"}
	gcTargets    = []string{"run_folder", "venv", "build_tmp"} // pkg/gc's targets
)

// jobBuckets fit jobs from 30 ms (a dry run) to a day (runs have no default
// timeout, so a long one must not vanish into +Inf), in seconds.
var jobBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800,
	3600, 7200, 14400, 28800, 86400}

// Metrics is an Observer that keeps Prometheus metrics in its own registry.
type Metrics struct {
	reg       *prometheus.Registry
	claimed   *prometheus.CounterVec
	finished  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	wait      *prometheus.HistogramVec
	buildWait prometheus.Histogram
	running   *prometheus.GaugeVec
	expired   *prometheus.CounterVec
	dbOps     *prometheus.CounterVec
	dbErrors  *prometheus.CounterVec
	gcRemoved *prometheus.CounterVec
	wakeups   prometheus.Gauge
	runners   prometheus.Counter
}

// Info describes this supervisor for ade_worker_build_info and
// ade_worker_concurrency.
type Info struct {
	Version     string
	Database    string // sqlite or postgres
	Concurrency int
}

// NewMetrics makes the metrics of one supervisor. queue, when not nil,
// feeds the queue gauges (read at most every queueEvery).
func NewMetrics(info Info, queue QueueReader, queueEvery time.Duration) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := factory{m.reg}
	m.claimed = f.counter("ade_worker_job_claimed_total", "Jobs this worker claimed.", "kind")
	m.finished = f.counter("ade_worker_job_finished_total", "Jobs this worker is done with, by outcome.", "kind", "outcome")
	m.duration = f.histogram("ade_worker_job_duration_seconds", "Time from claim to the job's end, by outcome.", "kind", "outcome")
	m.wait = f.histogram("ade_worker_job_wait_seconds",
		"Time a job waited from claimable (created, available again, or its build ready) to claimed: queue wait only.", "kind")
	m.buildWait = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ade_worker_job_build_wait_seconds",
		Help: "Time a run waited for its build to be ready before it could be claimed (0 when the build was ready already).", Buckets: jobBuckets})
	m.reg.MustRegister(m.buildWait)
	m.running = f.gauge("ade_worker_job_running", "Jobs running on this worker now.", "kind")
	m.expired = f.counter("ade_worker_lease_expired_total", "Jobs with an expired lease that cleanup re-queued or failed.", "kind", "action")
	m.dbOps = f.counter("ade_worker_db_operations_total", "Database operations, failed or not, by operation: the denominator of the error ratio.", "op")
	m.dbErrors = f.counter("ade_worker_db_errors_total", "Failed database operations, by operation.", "op")
	m.gcRemoved = f.counter("ade_worker_gc_removed_total", "Things the garbage collector removed, by target.", "target")
	m.wakeups = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ade_worker_wakeups_up",
		Help: "1 while instant wake-ups work, 0 while polling alone finds new jobs (slower pickup)."})
	m.reg.MustRegister(m.wakeups)
	m.runners = prometheus.NewCounter(prometheus.CounterOpts{Name: "ade_worker_jobrunner_started_total",
		Help: "Jobrunner processes started: about one per ADE_WORKER_JOBRUNNER_JOBS jobs while jobs end in order, one per job ended by a cancel, a timeout, a lost lease or a crash."})
	m.reg.MustRegister(m.runners)
	conc := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ade_worker_concurrency", Help: "How many jobs this worker runs at once at most."})
	conc.Set(float64(info.Concurrency))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ade_worker_build_info",
		Help: "Always 1; labels name the version and the database kind."}, []string{"version", "database"})
	buildInfo.WithLabelValues(info.Version, info.Database).Set(1)
	m.reg.MustRegister(conc, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Show 0, not nothing, so rates and ratios work before the first event.
	for _, kind := range kinds {
		m.running.WithLabelValues(kind)
		m.claimed.WithLabelValues(kind)
		m.wait.WithLabelValues(kind)
		for _, o := range outcomes {
			m.finished.WithLabelValues(kind, o)
			m.duration.WithLabelValues(kind, o)
		}
		for _, a := range leaseActions {
			m.expired.WithLabelValues(kind, a)
		}
	}
	for _, op := range dbOps {
		m.dbOps.WithLabelValues(op)
		m.dbErrors.WithLabelValues(op)
	}
	for _, t := range gcTargets {
		m.gcRemoved.WithLabelValues(t)
	}
	if queue != nil {
		m.reg.MustRegister(newQueueCollector(queue, queueEvery, m.DBOp))
	}
	return m
}

// Registry is what /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// JobClaimed implements Observer.
func (m *Metrics) JobClaimed(kind string, wait, buildWait time.Duration) {
	m.claimed.WithLabelValues(kind).Inc()
	m.wait.WithLabelValues(kind).Observe(max(wait, 0).Seconds())
	if kind == "run" {
		m.buildWait.Observe(max(buildWait, 0).Seconds())
	}
	m.running.WithLabelValues(kind).Inc()
}

// JobEnded implements Observer.
func (m *Metrics) JobEnded(kind, outcome string, took time.Duration) {
	m.finished.WithLabelValues(kind, outcome).Inc()
	m.duration.WithLabelValues(kind, outcome).Observe(took.Seconds())
	m.running.WithLabelValues(kind).Dec()
}

// DBOp implements Observer.
func (m *Metrics) DBOp(op string, err error) {
	m.dbOps.WithLabelValues(op).Inc()
	if err != nil {
		m.dbErrors.WithLabelValues(op).Inc()
	}
}

// JobrunnerStarted counts a jobrunner process started.
func (m *Metrics) JobrunnerStarted() { m.runners.Inc() }

// Wakeups implements Observer.
func (m *Metrics) Wakeups(up bool) {
	if up {
		m.wakeups.Set(1)
	} else {
		m.wakeups.Set(0)
	}
}

// WatchHealth exports h's readiness as ade_worker_ready (1 or 0), read at
// each scrape: "no worker ready" is then a query, not a probe log.
func (m *Metrics) WatchHealth(h *Health) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ade_worker_ready",
		Help: "1 while this worker's /readyz answers 200 (it claims jobs), else 0."}, func() float64 {
		if ready, _ := h.Ready(); ready {
			return 1
		}
		return 0
	}))
}

// LeasesExpired implements Observer.
func (m *Metrics) LeasesExpired(kind, action string, n int) {
	if n > 0 {
		m.expired.WithLabelValues(kind, action).Add(float64(n))
	}
}

// GCRemoved implements Observer.
func (m *Metrics) GCRemoved(target string, n int) {
	if n > 0 {
		m.gcRemoved.WithLabelValues(target).Add(float64(n))
	}
}

type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: jobBuckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// QueueStat is the queue of one kind of job as the database holds it.
type QueueStat struct {
	Kind        string
	Ready       int64     // queued and available now
	Delayed     int64     // queued, waiting for available_at (retry backoff)
	Running     int64     // claimed by some worker
	OldestReady time.Time // when the oldest ready job became available; zero when none
}

// QueueReader reads the queue; it must be cheap (partial indexes only).
type QueueReader func(ctx context.Context, now time.Time) ([]QueueStat, error)

// cachedReading is a database reading that scrapes share: read when
// scraped, at most once per every, so many scrapers (or many replicas'
// scrapes) cost the database little; left out once the last good reading
// is older than readingStale rather than repeating old numbers.
type cachedReading[T any] struct {
	op     string // the database operation it counts as
	read   func(ctx context.Context, now time.Time) (T, error)
	every  time.Duration
	onRead func(op string, err error)

	mu      sync.Mutex
	last    T
	readAt  time.Time // last attempt
	validAt time.Time // last success
}

// readingStale is how old the last good reading may be before its gauges
// are left out.
const readingStale = time.Minute

// get returns the reading, read again when the last attempt is older than
// every, and the time to compute ages against; ok is false when the last
// good reading is stale.
func (c *cachedReading[T]) get() (got T, now time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now = time.Now()
	if now.Sub(c.readAt) >= c.every {
		c.readAt = now
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, err := c.read(ctx, now)
		cancel()
		c.onRead(c.op, err)
		if err == nil {
			c.last, c.validAt = v, now
		}
	}
	if now.Sub(c.validAt) > readingStale {
		return got, now, false
	}
	return c.last, now, true
}

// queueCollector is the queue gauges, from a cachedReading.
type queueCollector struct {
	reading *cachedReading[[]QueueStat]
	jobs    *prometheus.Desc
	oldest  *prometheus.Desc
}

func newQueueCollector(read QueueReader, every time.Duration, onRead func(string, error)) *queueCollector {
	return &queueCollector{
		reading: &cachedReading[[]QueueStat]{op: "queue_stats", read: read, every: every, onRead: onRead},
		jobs: prometheus.NewDesc("ade_worker_queue_jobs",
			"Jobs in the queue by state (ready, delayed, running), as the database holds them; the same on every replica: aggregate with max.",
			[]string{"kind", "state"}, nil),
		oldest: prometheus.NewDesc("ade_worker_queue_oldest_ready_age_seconds",
			"How long the oldest ready job has been waiting; 0 when none waits. The same on every replica: aggregate with max.",
			[]string{"kind"}, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.oldest
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	stats, now, _ := c.reading.get() // nil when stale: no gauges
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(s.Ready), s.Kind, "ready")
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(s.Delayed), s.Kind, "delayed")
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(s.Running), s.Kind, "running")
		age := 0.0
		if !s.OldestReady.IsZero() {
			age = max(now.Sub(s.OldestReady).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age, s.Kind)
	}
}
