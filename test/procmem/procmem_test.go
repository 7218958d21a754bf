package procmem

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestSampleChildrenSeesAChild(t *testing.T) {
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	s := SampleChildren(os.Getpid(), 5*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		kb := s.peak["sleep"]
		s.mu.Unlock()
		if kb > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no VmHWM sampled for the sleep child within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	peaks := s.Stop()
	if again := s.Stop(); again["sleep"] != peaks["sleep"] {
		t.Errorf("second Stop = %v, want %v", again, peaks)
	}
	name, hwm, err := Status(os.Getpid())
	if err != nil || name == "" || hwm <= 0 {
		t.Errorf("Status(self) = %q, %d, %v; want a name and a positive VmHWM", name, hwm, err)
	}
}
