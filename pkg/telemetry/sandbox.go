package telemetry

import "github.com/prometheus/client_golang/prometheus"

// CondSandbox reports how jobs are confined; it never makes a supervisor
// unready (ADE_WORKER_SANDBOX=required refuses to start instead).
const CondSandbox = "sandbox"

// RegisterSandbox adds ade_worker_sandbox_enforced{mode,rule}: 1 for each
// rule this supervisor's jobs are confined by, 0 for each it is not
// (mode off, or a kernel without it under best-effort).
func RegisterSandbox(reg *prometheus.Registry, mode string, enforced map[string]bool) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ade_worker_sandbox_enforced",
		Help: "1 when jobs are confined by the rule (filesystem, tcp, signals, ...), 0 when not; mode is ADE_WORKER_SANDBOX.",
	}, []string{"mode", "rule"})
	for rule, on := range enforced {
		v := 0.0
		if on {
			v = 1
		}
		g.WithLabelValues(mode, rule).Set(v)
	}
	reg.MustRegister(g)
}
