package telemetry

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

func TestMetricNames(t *testing.T) {
	queue := func(context.Context, time.Time) ([]QueueStat, error) {
		return []QueueStat{{Kind: "run", Ready: 2, OldestReady: time.Now().Add(-time.Minute)}, {Kind: "build"}}, nil
	}
	m := NewMetrics(Info{Version: "v1", Database: "sqlite", Concurrency: 3}, queue, time.Second)
	m.JobClaimed("run", 30*time.Millisecond, 4*time.Second)
	m.JobEnded("run", OutcomeSucceeded, 2*time.Second)
	m.DBOp("claim", errors.New("connection refused"))
	m.DBOp("claim", nil)
	m.Wakeups(true)
	m.JobrunnerStarted()
	m.WatchHealth(NewHealth(time.Minute))
	m.LeasesExpired("run", "requeued", 2)
	m.GCRemoved("run_folder", 4)

	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.MetricFamily{}
	for _, f := range families {
		got[f.GetName()] = f
	}
	want := map[string]dto.MetricType{
		"ade_worker_job_claimed_total":              dto.MetricType_COUNTER,
		"ade_worker_job_finished_total":             dto.MetricType_COUNTER,
		"ade_worker_job_duration_seconds":           dto.MetricType_HISTOGRAM,
		"ade_worker_job_wait_seconds":               dto.MetricType_HISTOGRAM,
		"ade_worker_job_running":                    dto.MetricType_GAUGE,
		"ade_worker_concurrency":                    dto.MetricType_GAUGE,
		"ade_worker_queue_jobs":                     dto.MetricType_GAUGE,
		"ade_worker_queue_oldest_ready_age_seconds": dto.MetricType_GAUGE,
		"ade_worker_lease_expired_total":            dto.MetricType_COUNTER,
		"ade_worker_db_errors_total":                dto.MetricType_COUNTER,
		"ade_worker_db_operations_total":            dto.MetricType_COUNTER,
		"ade_worker_job_build_wait_seconds":         dto.MetricType_HISTOGRAM,
		"ade_worker_wakeups_up":                     dto.MetricType_GAUGE,
		"ade_worker_jobrunner_started_total":        dto.MetricType_COUNTER,
		"ade_worker_ready":                          dto.MetricType_GAUGE,
		"ade_worker_gc_removed_total":               dto.MetricType_COUNTER,
		"ade_worker_build_info":                     dto.MetricType_GAUGE,
	}
	for name, typ := range want {
		f, ok := got[name]
		if !ok {
			t.Errorf("metric %s missing", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is a %s, want %s", name, f.GetType(), typ)
		}
	}
	allowed := []string{"kind", "outcome", "state", "action", "op", "target", "version", "database"}
	for name, f := range got {
		if !strings.HasPrefix(name, "ade_worker_") {
			continue
		}
		if strings.HasSuffix(name, "_total") != (f.GetType() == dto.MetricType_COUNTER) {
			t.Errorf("%s: _total is for counters only, and every counter has it", name)
		}
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if !slices.Contains(allowed, l.GetName()) {
					t.Errorf("%s has label %q: no ids or free text as labels", name, l.GetName())
				}
			}
		}
	}
	if v := testutil.ToFloat64(m.running.WithLabelValues("run")); v != 0 {
		t.Errorf("job_running{run} = %v after one claim and one end, want 0", v)
	}
}

func TestHistogramBucketsFitShortAndLongJobs(t *testing.T) {
	// A 30 ms job, a 30 min job and a 5 h one must land in buckets that tell them apart
	// from their neighbours, not in +Inf.
	for _, d := range []time.Duration{30 * time.Millisecond, 30 * time.Minute, 5 * time.Hour} {
		s := d.Seconds()
		i := slices.IndexFunc(jobBuckets, func(b float64) bool { return b >= s })
		if i <= 0 {
			t.Errorf("%s falls outside the buckets %v", d, jobBuckets)
		}
	}
}

func TestQueueReadAtMostEvery(t *testing.T) {
	var reads atomic.Int32
	queue := func(context.Context, time.Time) ([]QueueStat, error) {
		reads.Add(1)
		return []QueueStat{{Kind: "run", Ready: 5}}, nil
	}
	m := NewMetrics(Info{}, queue, time.Hour)
	for range 3 {
		if n, err := testutil.GatherAndCount(m.Registry(), "ade_worker_queue_jobs"); err != nil || n != 3 {
			t.Fatalf("queue series = %d, %v; want 3 (ready, delayed, running)", n, err)
		}
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("three scrapes read the queue %d times, want once", n)
	}
}

// A fresh worker shows every counter and gauge at 0 for each label value it
// can take, so rates and ratios read 0, not "no data", until the first event.
func TestFreshMetricsAreZero(t *testing.T) {
	m := NewMetrics(Info{Version: "v1", Database: "sqlite", Concurrency: 1}, nil, time.Second)
	for name, want := range map[string]int{
		"ade_worker_job_claimed_total":       len(kinds),
		"ade_worker_job_finished_total":      len(kinds) * len(outcomes),
		"ade_worker_job_running":             len(kinds),
		"ade_worker_lease_expired_total":     len(kinds) * len(leaseActions),
		"ade_worker_db_operations_total":     len(dbOps),
		"ade_worker_db_errors_total":         len(dbOps),
		"ade_worker_gc_removed_total":        len(gcTargets),
		"ade_worker_wakeups_up":              1,
		"ade_worker_jobrunner_started_total": 1,
	} {
		if n, err := testutil.GatherAndCount(m.Registry(), name); err != nil || n != want {
			t.Errorf("%s: %d series (%v), want %d", name, n, err, want)
		}
	}
}

func TestDBOpCountsOperationsAndErrors(t *testing.T) {
	m := NewMetrics(Info{}, nil, time.Second)
	m.DBOp("write", nil)
	m.DBOp("write", errors.New("timeout"))
	m.DBOp("write", nil)
	if ops, errs := testutil.ToFloat64(m.dbOps.WithLabelValues("write")), testutil.ToFloat64(m.dbErrors.WithLabelValues("write")); ops != 3 || errs != 1 {
		t.Errorf("write: %v operations, %v errors; want 3 and 1", ops, errs)
	}
}
