package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/jobrunner"
	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/procs"
)

// jobrunners are the supervisor's serving jobrunner processes
// (jobrunner.ServeArg): one per busy slot, each handed job after job. A
// process start and exit cost a run more CPU than the rest of the
// jobrunner's work for it, so one that ended its job in order (it printed
// a result, nothing stopped it) goes back to the idle set for the next
// job. Any other ending (a cancel, a lost lease, a timeout, a shutdown, a
// crash) ends the process: its next job gets a fresh one, as every job did
// when each had its own.
type jobrunners struct {
	path     string
	children *procs.Children
	maxJobs  int    // jobs one process serves before it is replaced
	started  func() // counts each process started (metrics)

	mu       sync.Mutex
	idle     []*jobrunnerProc
	closed   bool
	retiring sync.WaitGroup
}

// jobrunnerProc is one serving jobrunner.
type jobrunnerProc struct {
	proc    *procs.Proc
	specs   *os.File    // job specs, one line each
	renew   *os.File    // lease renewal lines, tagged with the job's number
	results chan []byte // one line per job; closed when its stdout ends
	log     atomic.Pointer[zerolog.Logger]
	served  int // jobs handed to it so far, the last one's renewal tag
	gone    atomic.Bool
}

// take returns an idle jobrunner, or starts one with env, its first job's.
func (js *jobrunners) take(env map[string]string, log zerolog.Logger) (*jobrunnerProc, error) {
	js.mu.Lock()
	for len(js.idle) > 0 {
		r := js.idle[len(js.idle)-1]
		js.idle = js.idle[:len(js.idle)-1]
		if !r.gone.Load() {
			js.mu.Unlock()
			r.log.Store(&log)
			return r, nil
		}
		// Died while idle (killed by hand, the OOM killer): its stderr,
		// forwarded, may say why.
		log.Warn().Int("pid", r.proc.Pid()).Msg("an idle jobrunner had exited; the job goes to a fresh one")
		js.discard(r)
	}
	js.mu.Unlock()
	return js.start(env, log)
}

func (js *jobrunners) start(env map[string]string, log zerolog.Logger) (*jobrunnerProc, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create the job spec pipe: %w", err)
	}
	renewR, renewW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return nil, fmt.Errorf("create the lease renewal pipe: %w", err)
	}
	r := &jobrunnerProc{specs: specW, renew: renewW, results: make(chan []byte, 1)}
	r.log.Store(&log)
	r.proc, err = procs.Start(procs.Command{
		Path: js.path, Args: []string{jobrunner.ServeArg}, Env: env, Stdin: specR, KillGrace: childKillGrace,
		ExtraFiles: []*os.File{renewR}, Children: js.children,
		// SIGTERM, not SIGKILL, if this supervisor dies: the jobrunner then
		// kills its engine and everything the engine started.
		DeathSignal: syscall.SIGTERM,
		Stdout:      r.readResults,
		Stderr:      func(rd io.Reader) { forwardLines(rd, func() zerolog.Logger { return *r.log.Load() }) },
	})
	// The child has its copies now: a dead child then makes writes fail.
	specR.Close()
	renewR.Close()
	if err != nil {
		specW.Close()
		renewW.Close()
		return nil, err
	}
	if js.started != nil {
		js.started()
	}
	return r, nil
}

// readResults hands on each result line; a line over maxResultBytes is
// handed on empty (no usable result), a partial one at the end not at all.
func (r *jobrunnerProc) readResults(rd io.Reader) {
	defer close(r.results)
	defer r.gone.Store(true)
	br := bufio.NewReaderSize(rd, 64<<10)
	for {
		line, err := jobspec.ReadLine(br, maxResultBytes)
		switch {
		case errors.Is(err, jobspec.ErrLineTooLong):
			r.results <- nil
		case err != nil:
			return
		default:
			r.results <- bytes.TrimSpace(line)
		}
	}
}

// send hands r one job.
func (r *jobrunnerProc) send(spec *jobspec.Spec) error {
	var buf bytes.Buffer
	if err := spec.EncodeLine(&buf); err != nil {
		return fmt.Errorf("encode job spec: %w", err)
	}
	_ = r.specs.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.specs.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("hand the job to its jobrunner: %w", err)
	}
	return nil
}

// nextTag numbers the next job r serves: the tag of its renewal lines.
func (r *jobrunnerProc) nextTag() string {
	r.served++
	return strconv.Itoa(r.served)
}

// tellRenewal writes one renewal line for the job tagged tag: the seconds
// its lease has left. A jobrunner that does not read must not stall the
// heartbeat of every job.
func (r *jobrunnerProc) tellRenewal(tag string, left time.Duration) {
	_ = r.renew.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = fmt.Fprintf(r.renew, "%.3f %s\n", left.Seconds(), tag)
}

// end stops r (SIGTERM, then SIGKILL after the grace) unless it has exited
// already or exits on its own before ctx ends, and waits for it.
func (r *jobrunnerProc) end(ctx context.Context) (procs.Exit, error) {
	r.specs.Close() // a serving jobrunner exits when its specs end
	defer r.renew.Close()
	return r.proc.Wait(ctx)
}

// give returns r, which has just ended a job in order, to the idle set, or
// ends it once it has served its share or the supervisor is closing.
func (js *jobrunners) give(r *jobrunnerProc) {
	js.mu.Lock()
	if !js.closed && r.served < js.maxJobs && !r.gone.Load() {
		js.idle = append(js.idle, r)
		js.mu.Unlock()
		return
	}
	js.mu.Unlock()
	js.discard(r)
}

// discard ends r, which is to serve no more, in the background.
func (js *jobrunners) discard(r *jobrunnerProc) {
	js.retiring.Add(1)
	go func() { defer js.retiring.Done(); js.retire(r) }()
}

// retire lets r exit on its own (its specs end) within the kill grace,
// then stops it.
func (js *jobrunners) retire(r *jobrunnerProc) {
	ctx, cancel := context.WithTimeout(context.Background(), childKillGrace)
	defer cancel()
	_, _ = r.end(ctx)
}

// close ends every idle jobrunner and makes later ones end after their job.
func (js *jobrunners) close() {
	js.mu.Lock()
	idle := js.idle
	js.idle, js.closed = nil, true
	js.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range idle {
		wg.Add(1)
		go func() { defer wg.Done(); js.retire(r) }()
	}
	wg.Wait()
	js.retiring.Wait()
}
