package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// cpuTimes are a process's CPU clock ticks from /proc/<pid>/stat: its own
// (utime, stime) and those of its children it has waited for (cutime,
// cstime). A jobrunner's engine is reaped by the jobrunner, so the
// supervisor's children's ticks hold jobrunner and engine together.
type cpuTimes struct {
	utime, stime, cutime, cstime uint64
}

func (c cpuTimes) self() uint64     { return c.utime + c.stime }
func (c cpuTimes) children() uint64 { return c.cutime + c.cstime }

func (c cpuTimes) sub(d cpuTimes) cpuTimes {
	return cpuTimes{c.utime - d.utime, c.stime - d.stime, c.cutime - d.cutime, c.cstime - d.cstime}
}

// readStat reads the CPU ticks of pid.
func readStat(pid int) (cpuTimes, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTimes{}, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Field 3 (state) is then index 0; utime is field 14.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return cpuTimes{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return cpuTimes{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	var v [4]uint64
	for k := range v {
		if v[k], err = strconv.ParseUint(f[11+k], 10, 64); err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	return cpuTimes{v[0], v[1], v[2], v[3]}, nil
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat times.
func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}
