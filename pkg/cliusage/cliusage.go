// Package cliusage makes a urfave/cli application fail loudly on usage
// errors: an unknown flag, a missing required flag, a bad flag value, an
// unexpected argument or an unknown subcommand prints one line on stderr
// naming it (and the closest flag or command for a misspelling) and exits 2,
// instead of printing the help on stdout and exiting 0. --help is left as
// it is: help on stdout, exit 0.
package cliusage

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
)

// ExitUsage is the exit status of a usage error (as in sysexits' and the
// shells' convention, and jobrunner's "spec unusable").
const ExitUsage = 2

// Errorf is a usage error of the command c: one line, exit status 2. The
// line ends with where to read the command's help.
func Errorf(c *cli.Context, format string, args ...any) error {
	return usageError(fmt.Sprintf(format, args...) + "; see '" + helpPath(c) + " --help'")
}

// usageError is a usage error's line; it exits with ExitUsage.
type usageError string

func (e usageError) Error() string { return string(e) }

// ExitCode implements cli.ExitCoder.
func (usageError) ExitCode() int { return ExitUsage }

// helpPath is the command line that names c, e.g. "supervisor enqueue run".
func helpPath(c *cli.Context) string {
	var names []string
	for _, ctx := range c.Lineage() {
		if ctx.Command != nil && ctx.Command.Name != "" && (ctx.App == nil || ctx.Command.Name != ctx.App.Name) {
			names = append([]string{ctx.Command.Name}, names...)
		}
	}
	if c.App != nil {
		names = append([]string{c.App.Name}, names...)
	}
	return strings.Join(names, " ")
}

// Apply installs the checks on app and every command under it. extra
// returns flags to add, hidden, to each command without subcommands (the
// app's global settings, so they may follow the subcommand); nil adds none.
// The copies read no environment variable and have no default, so they are
// set only when given after the subcommand.
// A command with an empty ArgsUsage takes no arguments; one with ArgsUsage
// checks its arguments in its action (with Errorf).
func Apply(app *cli.App, extra func() []cli.Flag) {
	app.OnUsageError = onUsageError(app.Flags)
	if app.ExitErrHandler == nil {
		app.ExitErrHandler = func(c *cli.Context, err error) {
			var u usageError
			if errors.As(err, &u) {
				Exit(app.Name, err)
			}
			cli.HandleExitCoder(err)
		}
	}
	for _, cmd := range app.Commands {
		applyCommand(cmd, extra)
	}
}

func applyCommand(cmd *cli.Command, extra func() []cli.Flag) {
	if len(cmd.Subcommands) > 0 {
		for _, sub := range cmd.Subcommands {
			applyCommand(sub, extra)
		}
		if cmd.Action == nil {
			cmd.Action = func(c *cli.Context) error {
				if c.Args().Present() {
					return Errorf(c, "unknown command %q%s", c.Args().First(), suggest(c.Args().First(), commandNames(cmd.Subcommands), ""))
				}
				return Errorf(c, "missing subcommand: one of %s", strings.Join(commandNames(cmd.Subcommands), ", "))
			}
		}
	} else if extra != nil {
		have := map[string]bool{}
		for _, f := range cmd.Flags {
			for _, n := range f.Names() {
				have[n] = true
			}
		}
		for _, f := range extra() {
			if sf, ok := f.(*cli.StringFlag); ok && !have[sf.Name] {
				// Set only by the command line: an environment variable
				// read here would outrank the same flag given before the
				// subcommand.
				sf.Hidden, sf.EnvVars, sf.Value = true, nil, ""
				cmd.Flags = append(cmd.Flags, sf)
			}
		}
	}
	required := takeRequired(cmd)
	noArgs := cmd.ArgsUsage == "" && len(cmd.Subcommands) == 0
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		var missing []string
		for _, name := range required {
			if !c.IsSet(name) || strings.TrimSpace(c.String(name)) == "" {
				missing = append(missing, "--"+name)
			}
		}
		if len(missing) > 0 {
			return Errorf(c, "missing required flag%s %s", plural(len(missing)), strings.Join(missing, ", "))
		}
		if noArgs && c.Args().Present() {
			return Errorf(c, "unexpected argument %q (this command takes none; flags go before arguments)", c.Args().First())
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
	cmd.OnUsageError = onUsageError(cmd.Flags)
}

// takeRequired clears the Required mark of cmd's string flags and returns
// their names: urfave/cli answers a missing required flag with the help on
// stdout, and scripts capturing an id would capture the help.
func takeRequired(cmd *cli.Command) []string {
	var names []string
	for _, f := range cmd.Flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Required {
			sf.Required = false
			sf.Usage += " (required)"
			names = append(names, sf.Name)
		}
	}
	return names
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

var (
	undefinedFlag = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	dashFlag      = regexp.MustCompile(`(: |flag )-([A-Za-z])`)
)

// onUsageError turns the flag package's parse error into one line that uses
// the "--name" spelling and suggests the closest of flags for an unknown one.
func onUsageError(flags []cli.Flag) cli.OnUsageErrorFunc {
	return func(c *cli.Context, err error, _ bool) error {
		msg := err.Error()
		if m := undefinedFlag.FindStringSubmatch(msg); m != nil {
			name, _, _ := strings.Cut(m[1], "=")
			return Errorf(c, "unknown flag %s%s", dashed(name), suggest(name, flagNames(flags), "--"))
		}
		return Errorf(c, "%s", dashFlag.ReplaceAllString(msg, "$1--$2"))
	}
}

func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

func flagNames(flags []cli.Flag) []string {
	var names []string
	for _, f := range flags {
		names = append(names, f.Names()...)
	}
	return names
}

func commandNames(cmds []*cli.Command) []string {
	var names []string
	for _, c := range cmds {
		if !c.Hidden && c.Name != "help" {
			names = append(names, c.Name)
		}
	}
	return names
}

// Suggest returns " (did you mean PREFIXname?)" for the closest of names to
// got, or "" when none is close enough to be a misspelling.
func Suggest(got string, names []string, prefix string) string { return suggest(got, names, prefix) }

func suggest(got string, names []string, prefix string) string {
	best, bestD := "", 1<<30
	for _, n := range names {
		if len(n) < 2 {
			continue
		}
		d := distance(strings.ToLower(got), strings.ToLower(n))
		if d < bestD {
			best, bestD = n, d
		}
	}
	// A misspelling: a few edits, fewer than half the name.
	if best == "" || bestD > 3 || bestD*2 > len(best) {
		return ""
	}
	return " (did you mean " + prefix + best + "?)"
}

// distance is the edit distance of a and b counting a swap of two
// neighbouring letters as one edit (optimal string alignment): "jbo" is one
// edit from "job".
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// Exit prints err (a usage error urfave/cli returned without handling it)
// on stderr as one line and exits 2. Call it with app.Run's error.
func Exit(name string, err error) {
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, name+":", err)
	os.Exit(ExitUsage)
}
