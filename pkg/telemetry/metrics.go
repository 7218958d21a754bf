package telemetry

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Outcomes of a claimed job, the outcome label of
// ade_worker_jobs_finished_total and ade_worker_job_duration_seconds.
const (
	OutcomeSucceeded  = "succeeded"
	OutcomeFailed     = "failed"
	OutcomeRetried    = "retried"     // re-queued with backoff, attempt counted
	OutcomeTimedOut   = "timed_out"   // failed by its timeout (exit 124)
	OutcomeCancelled  = "cancelled"   // cancelled through the database
	OutcomeLeaseLost  = "lease_lost"  // another worker owns it, or its outcome could not be written in time
	OutcomeHandedBack = "handed_back" // re-queued at shutdown, attempt not counted
)

// Observer is told what happens to jobs. The supervisor calls it from the
// claim path and each job's end; Nop is used when metrics are off.
type Observer interface {
	// JobClaimed: a job of kind was claimed after waiting (claimable ->
	// claimed) for wait.
	JobClaimed(kind string, wait time.Duration)
	// JobEnded: this worker is done with a job it claimed took ago.
	JobEnded(kind, outcome string, took time.Duration)
	// DBError: a database operation op (claim, heartbeat, write, cleanup,
	// probe, queue_stats) failed.
	DBError(op string)
	// LeasesExpired: cleanup found n jobs of kind whose lease had expired
	// and requeued or failed them (action).
	LeasesExpired(kind, action string, n int)
	// GCRemoved: the garbage collector removed n things of target (e.g.
	// run_dirs, venvs, build_tmp).
	GCRemoved(target string, n int)
}

// Nop is an Observer that records nothing.
type Nop struct{}

func (Nop) JobClaimed(string, time.Duration)       {}
func (Nop) JobEnded(string, string, time.Duration) {}
func (Nop) DBError(string)                         {}
func (Nop) LeasesExpired(string, string, int)      {}
func (Nop) GCRemoved(string, int)                  {}

// jobBuckets fit jobs from 30 ms (a dry run) to 30 min (a big workbook or
// a slow pip install), in seconds.
var jobBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600}

// Metrics is an Observer that keeps Prometheus metrics in its own registry.
type Metrics struct {
	reg       *prometheus.Registry
	claimed   *prometheus.CounterVec
	finished  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	wait      *prometheus.HistogramVec
	running   *prometheus.GaugeVec
	expired   *prometheus.CounterVec
	dbErrors  *prometheus.CounterVec
	gcRemoved *prometheus.CounterVec
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
	m.claimed = f.counter("ade_worker_jobs_claimed_total", "Jobs this worker claimed.", "kind")
	m.finished = f.counter("ade_worker_jobs_finished_total", "Jobs this worker is done with, by outcome.", "kind", "outcome")
	m.duration = f.histogram("ade_worker_job_duration_seconds", "Time from claim to the job's end, by outcome.", "kind", "outcome")
	m.wait = f.histogram("ade_worker_job_wait_seconds", "Time a job waited from claimable (created or available again) to claimed.", "kind")
	m.running = f.gauge("ade_worker_jobs_running", "Jobs running on this worker now.", "kind")
	m.expired = f.counter("ade_worker_leases_expired_total", "Jobs with an expired lease that cleanup re-queued or failed.", "kind", "action")
	m.dbErrors = f.counter("ade_worker_db_errors_total", "Failed database operations, by operation.", "op")
	m.gcRemoved = f.counter("ade_worker_gc_removed_total", "Things the garbage collector removed, by target.", "target")
	conc := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ade_worker_concurrency", Help: "How many jobs this worker runs at once at most."})
	conc.Set(float64(info.Concurrency))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ade_worker_build_info",
		Help: "Always 1; labels name the version and the database kind."}, []string{"version", "database"})
	buildInfo.WithLabelValues(info.Version, info.Database).Set(1)
	m.reg.MustRegister(conc, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, kind := range []string{"build", "run"} {
		m.running.WithLabelValues(kind) // show 0, not nothing
		m.claimed.WithLabelValues(kind)
	}
	if queue != nil {
		m.reg.MustRegister(newQueueCollector(queue, queueEvery, m.DBError))
	}
	return m
}

// Registry is what /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// JobClaimed implements Observer.
func (m *Metrics) JobClaimed(kind string, wait time.Duration) {
	m.claimed.WithLabelValues(kind).Inc()
	m.wait.WithLabelValues(kind).Observe(max(wait, 0).Seconds())
	m.running.WithLabelValues(kind).Inc()
}

// JobEnded implements Observer.
func (m *Metrics) JobEnded(kind, outcome string, took time.Duration) {
	m.finished.WithLabelValues(kind, outcome).Inc()
	m.duration.WithLabelValues(kind, outcome).Observe(took.Seconds())
	m.running.WithLabelValues(kind).Dec()
}

// DBError implements Observer.
func (m *Metrics) DBError(op string) { m.dbErrors.WithLabelValues(op).Inc() }

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

// queueCollector reads the queue when scraped, at most once per every: many
// scrapers (or many replicas' scrapes) cost the database little.
type queueCollector struct {
	read    QueueReader
	every   time.Duration
	onError func(op string)
	jobs    *prometheus.Desc
	oldest  *prometheus.Desc

	mu      sync.Mutex
	last    []QueueStat
	readAt  time.Time // last attempt
	validAt time.Time // last success
}

// queueStale is how old the last good reading may be before the queue
// gauges are left out instead of repeating old numbers.
const queueStale = time.Minute

func newQueueCollector(read QueueReader, every time.Duration, onError func(string)) *queueCollector {
	return &queueCollector{
		read: read, every: every, onError: onError,
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
	stats, now := c.snapshot()
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

// snapshot returns the queue, read again when the last reading is older
// than every, and the time to compute ages against.
func (c *queueCollector) snapshot() ([]QueueStat, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Sub(c.readAt) >= c.every {
		c.readAt = now
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		stats, err := c.read(ctx, now)
		cancel()
		if err != nil {
			c.onError("queue_stats")
		} else {
			c.last, c.validAt = stats, now
		}
	}
	if now.Sub(c.validAt) > queueStale {
		return nil, now
	}
	return c.last, now
}
