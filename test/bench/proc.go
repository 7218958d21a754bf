package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
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

// procStatus reads the name and peak resident set size (VmHWM, in KiB) of
// pid from /proc/<pid>/status.
func procStatus(pid int) (name string, hwmKiB int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		switch k {
		case "Name":
			name = strings.TrimSpace(v)
		case "VmHWM":
			hwmKiB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return name, hwmKiB, sc.Err()
}

// childPIDs lists the live children of pid (every thread's children file).
func childPIDs(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// hwmSampler polls the peak RSS of the children of one process (the
// jobrunners of a supervisor) by process name. VmHWM is the process's own
// high-water mark, so the last sample before a child exits is its peak,
// up to what it grew in its final sampling interval.
type hwmSampler struct {
	mu   sync.Mutex
	peak map[string]int64 // KiB by process name
	stop chan struct{}
	done chan struct{}
}

func sampleChildren(pid int, every time.Duration) *hwmSampler {
	s := &hwmSampler{peak: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			for _, c := range childPIDs(pid) {
				name, hwm, err := procStatus(c)
				if err != nil {
					continue
				}
				s.mu.Lock()
				s.peak[name] = max(s.peak[name], hwm)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peaks seen, in KiB by process name.
func (s *hwmSampler) Stop() map[string]int64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
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
