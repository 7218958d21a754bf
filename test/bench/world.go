package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gorm.io/gorm"

	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
	"github.com/ade-org/ade-worker/test/procmem"
)

// world is one isolated installation: a fresh database, data folders, one
// workspace with one configuration, and the settings the supervisor runs with.
type world struct {
	b       *bench
	backend string
	dir     string
	env     map[string]string
	st      *store.Store
	drop    func()
	ws, cfg string
	build   string // the ready build runs use
	nsup    int
	nsrc    int
}

// newWorld makes and migrates a database of backend, with a workspace and
// one configuration (the test configuration package, added by the CLI).
func (b *bench) newWorld(ctx context.Context, backend, name string) (w *world, err error) {
	dir, err := os.MkdirTemp(b.tmp, name+"-"+backend+"-")
	if err != nil {
		return nil, err
	}
	w = &world{b: b, backend: backend, dir: dir, ws: store.NewID(), drop: func() {}}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	dbURL, drop, err := b.newDatabase(ctx, backend, dir)
	if err != nil {
		return w, err
	}
	w.drop = drop
	w.env = map[string]string{
		"ADE_DATABASE_URL":              dbURL,
		"ADE_WORKSPACES_DIR":            filepath.Join(dir, "workspaces"),
		"ADE_VENVS_DIR":                 filepath.Join(dir, "venvs"),
		"ADE_PIP_CACHE_DIR":             filepath.Join(dir, "pip-cache"),
		"ADE_ENGINE_SPEC":               filepath.Join(b.repo, "test", "engine"),
		"PIP_NO_INDEX":                  "1",
		"PIP_DISABLE_PIP_VERSION_CHECK": "1",
	}
	if b.opts.claimOrder != "" {
		w.env["ADE_WORKER_CLAIM_ORDER"] = b.opts.claimOrder
	}
	if _, err := w.cli(ctx, "migrate"); err != nil {
		return w, err
	}
	u, err := settings.ParseDatabaseURL(dbURL)
	if err != nil {
		return w, err
	}
	if u.DSN, err = withAppName(u.DSN); err != nil {
		return w, err
	}
	if w.st, err = store.Open(ctx, u, store.Options{}); err != nil {
		return w, err
	}
	w.cfg, err = w.addConfig(ctx)
	return w, err
}

// newReadyWorld is newWorld with a ready build of its configuration whose
// venv is a copy of venv: where the workloads that run no build start.
func (b *bench) newReadyWorld(ctx context.Context, backend, name, venv string) (*world, error) {
	w, err := b.newWorld(ctx, backend, name)
	if err != nil {
		return nil, err
	}
	if err := w.addReadyBuild(ctx, venv); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

func (w *world) close() {
	if w.st != nil {
		w.st.Close()
	}
	w.drop()
	// The folders stay until the bench ends: deleting thousands of files
	// between measurements makes later file creation slower on some file
	// systems (ext4 without a journal skips recently freed inodes).
}

// newDatabase returns the URL of a fresh database and how to drop it.
func (b *bench) newDatabase(ctx context.Context, backend, dir string) (string, func(), error) {
	if backend == "sqlite" {
		return "sqlite:///" + filepath.Join(dir, "db", "ade.sqlite"), func() {}, nil
	}
	dbURL, drop, err := pgtemp.Create(ctx, b.opts.pgAdmin, "ade_bench")
	if err != nil {
		return "", nil, err
	}
	return dbURL, func() {
		if err := drop(); err != nil {
			b.logf("warning: %v", err)
		}
	}, nil
}

// benchAppName marks the bench's own PostgreSQL connections, so that the
// server CPU of the supervisor's connections can be told apart.
const benchAppName = "ade-bench"

func withAppName(dsn string) (string, error) {
	if dsn == "" {
		return "", nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("application_name", benchAppName)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// serverTicks returns the CPU ticks of the PostgreSQL backend processes
// serving this world's database for others than the bench (the supervisor's
// connections), by pid; nil on SQLite. The server must be on this machine.
func (w *world) serverTicks(ctx context.Context) (map[int]uint64, error) {
	if w.backend != "postgres" {
		return nil, nil
	}
	var pids []int
	err := w.query(ctx, &pids, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
		AND COALESCE(application_name, '') <> ?`, benchAppName)
	if err != nil {
		return nil, err
	}
	out := map[int]uint64{}
	for _, pid := range pids {
		if t, err := procmem.CPU(pid); err == nil {
			out[pid] = t.Self()
		}
	}
	return out, nil
}

// cpuMark is the CPU a supervisor and the PostgreSQL backends serving its
// connections have used so far.
type cpuMark struct {
	sup procmem.CPUTimes
	// live is the CPU of the supervisor's live descendants, each with its
	// reaped children: a jobrunner serves job after job, so the CPU of it
	// and of the engines it reaped reaches the supervisor's own children
	// count only when it exits.
	live uint64
	db   map[int]uint64 // serverTicks
}

// children is the CPU of the supervisor's processes, live or reaped.
func (m cpuMark) children() uint64 { return m.sup.Children() + m.live }

func (w *world) markCPU(ctx context.Context, supervisor int) (m cpuMark, err error) {
	if m.sup, err = procmem.CPU(supervisor); err != nil {
		return m, err
	}
	m.live = liveDescendantTicks(supervisor)
	m.db, err = w.serverTicks(ctx)
	return m, err
}

// ticksSince sums the CPU ticks processes used since before; processes that
// appeared in between count from zero (those that ended are missed).
func ticksSince(before, after map[int]uint64) uint64 {
	var sum uint64
	for pid, t := range after {
		if t >= before[pid] {
			sum += t - before[pid]
		}
	}
	return sum
}

func (w *world) environ(extra map[string]string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range w.env {
		env = append(env, k+"="+v)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// cli runs a supervisor subcommand to completion and returns its stdout.
func (w *world) cli(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(w.b.bin, "supervisor"), args...)
	cmd.Env, cmd.Dir = w.environ(nil), w.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("supervisor %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func (w *world) addConfig(ctx context.Context) (string, error) {
	return w.cli(ctx, "enqueue", "configuration", "--workspace", w.ws, "--from", filepath.Join(w.b.repo, "test", "config"))
}

// addReadyBuild inserts a ready build of the world's configuration whose
// environment is venv (a folder with bin/python and the ade-build.json
// marker), copied into place with hard links, so runs need no pip install.
func (w *world) addReadyBuild(ctx context.Context, venv string) error {
	id, now := store.NewID(), time.Now()
	err := w.exec(ctx, `INSERT INTO builds (id, workspace_id, configuration_id, fingerprint, engine_spec, status, exit_code,
		created_at, started_at, finished_at, available_at, attempt_count, max_attempts)
		VALUES (?, ?, ?, ?, 'bench', 'ready', 0, ?, ?, ?, ?, 1, 3)`,
		id, w.ws, w.cfg, "bench-"+id, w.ts(now), w.ts(now), w.ts(now), w.ts(now))
	if err != nil {
		return err
	}
	dir := filepath.Join(w.env["ADE_VENVS_DIR"], w.ws, w.cfg, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	w.build = id
	// A hard-linked copy, as the worker's own build reuse makes: a link
	// would be refused (no path below the venvs root may be a link).
	if out, err := exec.CommandContext(ctx, "cp", "-al", venv, filepath.Join(dir, ".venv")).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the bench venv: %v: %s", err, out)
	}
	return nil
}

func (w *world) ts(t time.Time) any { return w.st.TestTime(t) }

func (w *world) exec(ctx context.Context, q string, args ...any) error {
	if err := w.st.TestDB().WithContext(ctx).Exec(q, args...).Error; err != nil {
		return fmt.Errorf("%s: %w", oneLine(q, 60), err)
	}
	return nil
}

func (w *world) query(ctx context.Context, dest any, q string, args ...any) error {
	if err := w.st.TestDB().WithContext(ctx).Raw(q, args...).Scan(dest).Error; err != nil {
		return fmt.Errorf("%s: %w", oneLine(q, 60), err)
	}
	return nil
}

// enqueue inserts n documents holding content and one queued run of each
// (of the ready build, created and available at the moment of the insert),
// tagged with batch in submitted_by_user_id, in one transaction, the way the
// ADE API inserts them. Each document is its own file (a hard link).
func (w *world) enqueue(ctx context.Context, batch string, n int, content []byte) ([]string, error) {
	w.nsrc++
	src := filepath.Join(w.dir, fmt.Sprintf("source-%d.csv", w.nsrc))
	if err := os.WriteFile(src, content, 0o644); err != nil {
		return nil, err
	}
	docDir := filepath.Join(w.env["ADE_WORKSPACES_DIR"], w.ws, "documents")
	if err := os.MkdirAll(docDir, 0o755); err != nil {
		return nil, err
	}
	docs, runs := make([]string, n), make([]string, n)
	for i := range docs {
		docs[i], runs[i] = store.NewID(), store.NewID()
		if err := os.Link(src, filepath.Join(docDir, docs[i]+".csv")); err != nil {
			return nil, err
		}
	}
	ts := w.ts(time.Now())
	const chunk = 200
	err := w.st.TestDB().WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for lo := 0; lo < n; lo += chunk {
			hi := min(lo+chunk, n)
			var dq, rq strings.Builder
			var da, ra []any
			dq.WriteString(`INSERT INTO documents (id, workspace_id, original_filename, content_type, byte_size, stored_uri,
				status, created_at, updated_at, version) VALUES `)
			rq.WriteString(`INSERT INTO runs (id, configuration_id, workspace_id, build_id, input_document_id, status,
				created_at, available_at, attempt_count, max_attempts, submitted_by_user_id) VALUES `)
			for i := lo; i < hi; i++ {
				if i > lo {
					dq.WriteString(", ")
					rq.WriteString(", ")
				}
				dq.WriteString("(?, ?, 'input.csv', 'text/csv', ?, ?, 'uploaded', ?, ?, 1)")
				da = append(da, docs[i], w.ws, len(content), docs[i]+".csv", ts, ts)
				rq.WriteString("(?, ?, ?, ?, ?, 'queued', ?, ?, 0, 3, ?)")
				ra = append(ra, runs[i], w.cfg, w.ws, w.build, docs[i], ts, ts, batch)
			}
			if err := tx.Exec(dq.String(), da...).Error; err != nil {
				return fmt.Errorf("insert documents: %w", err)
			}
			if err := tx.Exec(rq.String(), ra...).Error; err != nil {
				return fmt.Errorf("insert runs: %w", err)
			}
		}
		return nil
	})
	return runs, err
}

// runRow is a run's outcome and timestamps as the database holds them.
type runRow struct {
	ID           string
	Status       string
	ErrorMessage sql.NullString
	CreatedAt    store.Time
	StartedAt    store.Time
	CompletedAt  store.Time
}

// batchRows reads the runs of a batch.
func (w *world) batchRows(ctx context.Context, batch string) ([]runRow, error) {
	var rows []runRow
	err := w.query(ctx, &rows, `SELECT id, status, error_message, created_at, started_at, completed_at
		FROM runs WHERE submitted_by_user_id = ?`, batch)
	return rows, err
}

// waitBatch waits until no run of the world is queued or running (a batch
// is the only live work in its world), or the supervisor exits, or timeout
// passes; then it checks that all n runs of the batch succeeded.
func (w *world) waitBatch(ctx context.Context, sup *supervisorProc, batch string, n int, timeout time.Duration) ([]runRow, error) {
	deadline := time.Now().Add(timeout)
	for {
		// Only this batch is live in the world, and counting live runs
		// uses the status index: the poll must not load the machine it
		// measures (the batch tag has no index).
		var pending int64
		err := w.query(ctx, &pending, `SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')`)
		if err != nil {
			return nil, err
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timed out after %s: %d of %d runs still queued or running (supervisor log %s)", timeout, pending, n, sup.logPath)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-sup.done:
			return nil, fmt.Errorf("supervisor exited early (%v); log %s", sup.err, sup.logPath)
		case <-time.After(20 * time.Millisecond):
		}
	}
	rows, err := w.batchRows(ctx, batch)
	if err != nil {
		return nil, err
	}
	if len(rows) != n {
		return nil, fmt.Errorf("batch has %d runs, want %d", len(rows), n)
	}
	for _, r := range rows {
		if r.Status != "succeeded" {
			return nil, fmt.Errorf("run %s %s: %s", r.ID, r.Status, r.ErrorMessage.String)
		}
	}
	return rows, nil
}

// supervisorProc is a running `supervisor` worker process.
type supervisorProc struct {
	cmd     *exec.Cmd
	pid     int
	logPath string
	done    chan struct{}
	err     error
}

// start launches the worker loop with the world's settings and waits until
// it has logged that it started.
func (w *world) start(ctx context.Context, concurrency int) (*supervisorProc, error) {
	w.nsup++
	logPath := filepath.Join(w.dir, fmt.Sprintf("supervisor-%d.log", w.nsup))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(w.b.bin, "supervisor"))
	extra := map[string]string{"ADE_WORKER_CONCURRENCY": fmt.Sprint(concurrency)}
	if w.b.opts.profileDir != "" {
		extra["ADE_WORKER_CPU_PROFILE"] = filepath.Join(w.b.opts.profileDir,
			fmt.Sprintf("%s-c%d-%d.pprof", filepath.Base(w.dir), concurrency, w.nsup))
	}
	cmd.Env = w.environ(extra)
	cmd.Dir = w.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &supervisorProc{cmd: cmd, pid: cmd.Process.Pid, logPath: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, _ := os.ReadFile(logPath)
		if bytes.Contains(data, []byte("supervisor started")) {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("supervisor exited at start (%v): %s", p.err, oneLine(string(data), 300))
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, errors.New("supervisor did not start within 30s; log " + logPath)
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *supervisorProc) stop() error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("supervisor did not stop within 60s of SIGTERM; log %s", p.logPath)
	}
}

func (p *supervisorProc) exitErr() error {
	if p.err != nil {
		return fmt.Errorf("supervisor exited with %v; log %s", p.err, p.logPath)
	}
	return nil
}
