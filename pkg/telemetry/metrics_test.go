package telemetry

import (
	"context"
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
	m.JobClaimed("run", 30*time.Millisecond)
	m.JobEnded("run", OutcomeSucceeded, 2*time.Second)
	m.DBError("claim")
	m.LeasesExpired("run", "requeued", 2)
	m.GCRemoved("run_dirs", 4)

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
		"ade_worker_jobs_claimed_total":             dto.MetricType_COUNTER,
		"ade_worker_jobs_finished_total":            dto.MetricType_COUNTER,
		"ade_worker_job_duration_seconds":           dto.MetricType_HISTOGRAM,
		"ade_worker_job_wait_seconds":               dto.MetricType_HISTOGRAM,
		"ade_worker_jobs_running":                   dto.MetricType_GAUGE,
		"ade_worker_concurrency":                    dto.MetricType_GAUGE,
		"ade_worker_queue_jobs":                     dto.MetricType_GAUGE,
		"ade_worker_queue_oldest_ready_age_seconds": dto.MetricType_GAUGE,
		"ade_worker_leases_expired_total":           dto.MetricType_COUNTER,
		"ade_worker_db_errors_total":                dto.MetricType_COUNTER,
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
		t.Errorf("jobs_running{run} = %v after one claim and one end, want 0", v)
	}
}

func TestHistogramBucketsFitShortAndLongJobs(t *testing.T) {
	// A 30 ms job and a 30 min job must land in buckets that tell them apart
	// from their neighbours, not in +Inf.
	for _, d := range []time.Duration{30 * time.Millisecond, 30 * time.Minute} {
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
