package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/sandbox"
	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/supervisor"
	"github.com/ade-org/ade-worker/pkg/telemetry"
)

// checkSandbox decides whether the worker may start with this host's
// Landlock (ADE_WORKER_SANDBOX) and logs what is not enforced.
func checkSandbox(e *env) (sandbox.Support, error) {
	support := sandbox.Probe()
	warnings, err := sandbox.Check(e.cfg.Sandbox, support)
	if err != nil {
		return support, err
	}
	for _, w := range warnings {
		e.log.Warn().Str("sandbox", string(e.cfg.Sandbox)).Int("landlock_abi", support.ABI).Msg(w)
	}
	if len(warnings) == 0 {
		e.log.Info().Str("sandbox", string(e.cfg.Sandbox)).Int("landlock_abi", support.ABI).Msg("jobs run confined by Landlock")
	}
	return support, nil
}

// sandboxEnforced says, rule by rule, whether jobs are confined by it.
func sandboxEnforced(mode sandbox.Mode, support sandbox.Support) map[string]bool {
	out := map[string]bool{}
	for _, r := range sandbox.Rules {
		out[r.Name] = mode != sandbox.Off && support.Enforced(r.Name)
	}
	return out
}

// reportSandbox puts the sandbox's state into /readyz and /metrics.
func reportSandbox(e *env, sup *supervisor.Supervisor, support sandbox.Support) {
	enforced := sandboxEnforced(e.cfg.Sandbox, support)
	var off []string
	for _, r := range sandbox.Rules {
		if !enforced[r.Name] {
			off = append(off, r.Name)
		}
	}
	reason := fmt.Sprintf("%s: every rule enforced (Landlock ABI %d)", e.cfg.Sandbox, support.ABI)
	if len(off) > 0 {
		reason = fmt.Sprintf("%s: not enforced: %s (Landlock ABI %d)", e.cfg.Sandbox, strings.Join(off, ", "), support.ABI)
	}
	sup.Health().Set(telemetry.CondSandbox, true, reason)
	if e.metrics != nil {
		telemetry.RegisterSandbox(e.metrics.Registry(), string(e.cfg.Sandbox), enforced)
	}
}

func sandboxCmd() *cli.Command {
	return &cli.Command{
		Name:  "sandbox",
		Usage: "print what this host's kernel lets the worker enforce on jobs, rule by rule",
		Description: `Reads the kernel's Landlock ABI and prints each rule of the job sandbox,
the ABI it needs and whether it is enforced under ADE_WORKER_SANDBOX. Exits 1
when ADE_WORKER_SANDBOX=required and the worker would refuse to start. It
does not open the database.`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			cfg, err := settings.FromCLI(c)
			if err != nil {
				return err
			}
			support := sandbox.Probe()
			_, checkErr := sandbox.Check(cfg.Sandbox, support)
			if c.Bool("json") {
				err = printSandboxJSON(os.Stdout, cfg.Sandbox, support, checkErr)
			} else {
				printSandbox(os.Stdout, cfg.Sandbox, support, checkErr)
			}
			if err != nil {
				return err
			}
			if checkErr != nil {
				return cli.Exit("", 1)
			}
			return nil
		},
	}
}

func printSandbox(w io.Writer, mode sandbox.Mode, support sandbox.Support, checkErr error) {
	fmt.Fprintf(w, "ADE_WORKER_SANDBOX=%s\n", mode)
	if support.ABI == 0 {
		fmt.Fprintf(w, "kernel: no Landlock (%s)\n", support.Problem)
	} else {
		fmt.Fprintf(w, "kernel: Landlock ABI %d (every rule needs %d)\n", support.ABI, sandbox.RequiredABI)
	}
	if support.NoSeccomp != "" {
		fmt.Fprintf(w, "kernel: %s\n", support.NoSeccomp)
	}
	enforced := sandboxEnforced(mode, support)
	for _, r := range sandbox.Rules {
		state := "enforced"
		switch {
		case mode == sandbox.Off:
			state = "off"
		case !enforced[r.Name]:
			state = "NOT enforced (needs " + r.Needs() + ")"
		}
		fmt.Fprintf(w, "%-17s %-28s %s\n", r.Name, state, r.What)
	}
	if checkErr != nil {
		fmt.Fprintln(w, "the worker refuses to start:", checkErr)
	}
}

func printSandboxJSON(w io.Writer, mode sandbox.Mode, support sandbox.Support, checkErr error) error {
	type rule struct {
		Name     string `json:"name"`
		ABI      int    `json:"abi"`
		Enforced bool   `json:"enforced"`
		What     string `json:"what"`
	}
	doc := struct {
		Mode       sandbox.Mode `json:"mode"`
		KernelABI  int          `json:"kernel_abi"`
		Problem    string       `json:"problem,omitempty"`
		NoSeccomp  string       `json:"no_seccomp,omitempty"`
		WouldStart bool         `json:"would_start"`
		Refusal    string       `json:"refusal,omitempty"`
		Rules      []rule       `json:"rules"`
	}{Mode: mode, KernelABI: support.ABI, Problem: support.Problem, NoSeccomp: support.NoSeccomp, WouldStart: checkErr == nil}
	if checkErr != nil {
		doc.Refusal = checkErr.Error()
	}
	enforced := sandboxEnforced(mode, support)
	for _, r := range sandbox.Rules {
		doc.Rules = append(doc.Rules, rule{r.Name, r.ABI, enforced[r.Name], r.What})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
