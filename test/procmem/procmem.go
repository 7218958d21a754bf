// Package procmem reads processes' peak resident memory and CPU from /proc,
// for the bench, the benchmarks and the end-to-end tests' memory bounds.
package procmem

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Status reads the name and peak resident set size (VmHWM, in KiB) of pid
// from /proc/<pid>/status. A zombie has no VmHWM: 0.
func Status(pid int) (name string, hwmKiB int64, err error) {
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

// Children lists the children of pid (every thread's children file).
func Children(pid int) []int {
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

// Sampler polls the peak RSS of the children of one process (the jobrunners
// of a supervisor) by process name. VmHWM is the process's own high-water
// mark, so the last sample before a child exits is its peak, up to what it
// grew in its final sampling interval.
type Sampler struct {
	mu   sync.Mutex
	peak map[string]int64 // KiB by process name
	stop chan struct{}
	once sync.Once
	done chan struct{}
}

// SampleChildren samples the children of pid every interval until Stop.
func SampleChildren(pid int, every time.Duration) *Sampler {
	s := &Sampler{peak: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			for _, c := range Children(pid) {
				if name, hwm, err := Status(c); err == nil {
					s.mu.Lock()
					s.peak[name] = max(s.peak[name], hwm)
					s.mu.Unlock()
				}
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

// Stop ends sampling (once; later calls only read) and returns the peaks
// seen, in KiB by process name.
func (s *Sampler) Stop() map[string]int64 {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}
