package telemetry

import (
	"context"
	"sync"
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
	m.reg.MustRegister(&pauseCollector{read: read, every: every, dbOp: m.DBOp,
		desc: prometheus.NewDesc("ade_worker_paused",
			"Pauses holding back queued work, by scope (all: 1 when everything is paused; workspace, configuration: how many are). The same on every replica: aggregate with max.",
			[]string{"scope"}, nil)})
}

type pauseCollector struct {
	read  PauseReader
	every time.Duration
	dbOp  func(op string, err error)
	desc  *prometheus.Desc

	mu      sync.Mutex
	last    map[string]int64
	readAt  time.Time
	validAt time.Time
}

func (c *pauseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *pauseCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Sub(c.readAt) >= c.every {
		c.readAt = now
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := c.read(ctx)
		cancel()
		c.dbOp("pauses", err)
		if err == nil {
			c.last, c.validAt = got, now
		}
	}
	if now.Sub(c.validAt) > queueStale {
		return // leave the gauge out rather than repeat an old count
	}
	for scope, n := range c.last {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), scope)
	}
}
