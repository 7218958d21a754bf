package procmem

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// CPUTimes are a process's CPU clock ticks from /proc/<pid>/stat: its own
// (utime, stime) and those of its children it has waited for (cutime,
// cstime). A jobrunner's engine is reaped by the jobrunner, so the
// supervisor's children's ticks hold jobrunner and engine together.
type CPUTimes struct {
	Utime, Stime, Cutime, Cstime uint64
}

// Self is the process's own ticks.
func (c CPUTimes) Self() uint64 { return c.Utime + c.Stime }

// Children is the ticks of the children it has waited for.
func (c CPUTimes) Children() uint64 { return c.Cutime + c.Cstime }

// Sub is c minus d, field by field.
func (c CPUTimes) Sub(d CPUTimes) CPUTimes {
	return CPUTimes{c.Utime - d.Utime, c.Stime - d.Stime, c.Cutime - d.Cutime, c.Cstime - d.Cstime}
}

// statFields is /proc/<pid>/stat after the command's name, which may hold
// spaces and parentheses: field 3 (state) is index 0.
func statFields(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return nil, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	return f, nil
}

// CPU reads the CPU ticks of pid.
func CPU(pid int) (CPUTimes, error) {
	f, err := statFields(pid)
	if err != nil {
		return CPUTimes{}, err
	}
	var v [4]uint64
	for k := range v { // utime is field 14, index 11
		if v[k], err = strconv.ParseUint(f[11+k], 10, 64); err != nil {
			return CPUTimes{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	return CPUTimes{v[0], v[1], v[2], v[3]}, nil
}

// Parent is pid's parent.
func Parent(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1])
}

// Schedstat is the first field of /proc/<pid>/schedstat: nanoseconds the
// process has run, exact where the stat ticks are sampled.
func Schedstat(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data))
	if len(f) < 1 {
		return 0, fmt.Errorf("/proc/%d/schedstat: unexpected format", pid)
	}
	return strconv.ParseUint(f[0], 10, 64)
}

// ClockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat times.
func ClockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}
