package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
)

// target is a goal from issue 5 for one figure's median.
type target struct {
	op    string // ">=", "<=", or "" for a reference value that is not checked
	value float64
	note  string // e.g. "orig 127": shown instead of a checked goal
}

func atLeast(v float64) target  { return target{op: ">=", value: v} }
func below(v float64) target    { return target{op: "<=", value: v} }
func reference(s string) target { return target{note: s} }

func (t target) String() string {
	switch t.op {
	case ">=":
		return "≥ " + num(t.value)
	case "<=":
		return "≤ " + num(t.value)
	}
	return t.note
}

// met reports whether v meets t; ok is false when t is not a checked goal.
func (t target) met(v float64) (met, ok bool) {
	switch t.op {
	case ">=":
		return v >= t.value, true
	case "<=":
		return v <= t.value, true
	}
	return false, false
}

// row is one figure: its samples (one per repeat, or one per operation where
// the metric says so) and its goal.
type row struct {
	workload, backend, metric string
	samples                   []float64
	target                    target
	err                       error
}

func (r row) stats() (med, lo, hi float64) {
	if len(r.samples) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	s := append([]float64(nil), r.samples...)
	sort.Float64s(s)
	return percentile(s, 50), s[0], s[len(s)-1]
}

// percentile of sorted values, interpolating between ranks.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := p / 100 * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (pos-float64(i))*(sorted[i+1]-sorted[i])
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return percentile(s, 50)
}

// num formats a figure with about three significant digits.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "-"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func (r row) cells() []string {
	if r.err != nil {
		return []string{r.workload, r.backend, "ERROR (below)", "-", "-", "-", ""}
	}
	med, lo, hi := r.stats()
	goal := r.target.String()
	if met, ok := r.target.met(med); ok {
		if met {
			goal += " ✓"
		} else {
			goal += " ✗"
		}
	}
	return []string{r.workload, r.backend, r.metric, num(med), num(lo), num(hi), goal}
}

var columns = []string{"workload", "backend", "metric", "median", "min", "max", "target"}

func writeText(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(columns, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t"))
	}
	tw.Flush()
	writeErrors(w, rows, "")
}

// writeErrors lists the failed workloads under the table.
func writeErrors(w io.Writer, rows []row, bullet string) {
	first := true
	for _, r := range rows {
		if r.err == nil {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nErrors:")
			first = false
		}
		fmt.Fprintf(w, "%s%s on %s: %s\n", bullet, r.workload, r.backend, oneLine(r.err.Error(), 2000))
	}
}

func writeMarkdown(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| "+strings.Join(columns, " | ")+" |")
	fmt.Fprintln(w, "|---|---|---|--:|--:|--:|---|")
	for _, r := range rows {
		c := r.cells()
		for i := range c {
			c[i] = strings.ReplaceAll(c[i], "|", `\|`)
		}
		fmt.Fprintln(w, "| "+strings.Join(c, " | ")+" |")
	}
	writeErrors(w, rows, "- ")
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
