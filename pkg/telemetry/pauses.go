package telemetry

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PauseReader counts the pauses in the database by scope (all, workspace,
// configuration); every scope it knows is in the map, 0 when none.
type PauseReader func(ctx context.Context) (map[string]int64, error)

// WatchPauses adds ade_worker_paused{scope}: how many pauses of each scope
// hold back queued work, read at most every every (the same on every
// replica: aggregate with max).
func (m *Metrics) WatchPauses(read PauseReader, every time.Duration) {
	readAt := func(ctx context.Context, _ time.Time) (map[string]int64, error) { return read(ctx) }
	m.reg.MustRegister(&pauseCollector{
		reading: &cachedReading[map[string]int64]{op: "pauses", read: readAt, every: every, onRead: m.DBOp},
		desc: prometheus.NewDesc("ade_worker_paused",
			"Pauses holding back queued work, by scope (all: 1 when everything is paused; workspace, configuration: how many are). The same on every replica: aggregate with max.",
			[]string{"scope"}, nil)})
}

type pauseCollector struct {
	reading *cachedReading[map[string]int64]
	desc    *prometheus.Desc
}

func (c *pauseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *pauseCollector) Collect(ch chan<- prometheus.Metric) {
	last, _, ok := c.reading.get()
	if !ok {
		return // leave the gauge out rather than repeat an old count
	}
	for scope, n := range last {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), scope)
	}
}
