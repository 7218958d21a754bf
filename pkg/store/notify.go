package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/ade-org/ade-worker/pkg/tick"
)

// notifyChannel is the PostgreSQL channel the worker's triggers notify.
const notifyChannel = "ade_worker_jobs"

// controlChannel carries orders about jobs that already run: today, a
// cancel, with a JSON payload {"action":"cancel","kind":"run","id":"..."}.
const controlChannel = "ade_worker_control"

// WatchQueue calls wake whenever work may have become claimable: on
// PostgreSQL when a trigger notifies, on SQLite when another process writes
// the database file. It returns when ctx ends, reconnecting or re-arming on
// errors (reported to onError). Polling stays on as the safety net.
//
// cancelled is called when a job may have been cancelled: with the job when
// the database names it (a PostgreSQL NOTIFY), with a zero JobRef when any
// job may have been (a write to the SQLite file, a LISTEN reconnect), so
// the caller checks every job it runs.
func (s *Store) WatchQueue(ctx context.Context, wake func(), cancelled func(JobRef), onError func(error)) {
	s.WatchFleet(ctx, Watch{Wake: wake, Cancelled: cancelled}, onError)
}

// Watch is what WatchFleet calls back.
type Watch struct {
	// WorkerID, when set, also listens on the supervisor's own wake
	// channel (WakeChannel), where the trigger sends the jobs meant for it.
	WorkerID string
	// Wake: work may have become claimable; directed is true when this
	// supervisor alone was chosen for it.
	Wake      func()
	Directed  func()
	Cancelled func(JobRef)
	// Listen, when set, says whether this supervisor should listen now
	// (PostgreSQL; it is asked again whenever ListenChanged fires). A
	// supervisor that does not listen hears of no wake-up, cancel or
	// step-down: its beat finds work, and a supervisor that runs jobs
	// listens for their cancels.
	Listen        func() bool
	ListenChanged <-chan struct{}
	// LeaderLeft, when set: the leader may have stepped down (a control
	// notification on PostgreSQL; any write to the file on SQLite).
	LeaderLeft func()
}

// WatchFleet is WatchQueue with the fleet's callbacks.
func (s *Store) WatchFleet(ctx context.Context, w Watch, onError func(error)) {
	if w.Directed == nil {
		w.Directed = w.Wake
	}
	if w.LeaderLeft == nil {
		w.LeaderLeft = func() {}
	}
	for ctx.Err() == nil {
		err := s.dialect.watch(ctx, s.watchTarget, w)
		// A watch fails when ctx ends; that error is not worth reporting.
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			onError(err)
		}
		_ = tick.Sleep(ctx, time.Second)
	}
}

// listenPostgres holds one dedicated connection until an error (ctx ending
// is one). It LISTENs while w.Listen says so and UNLISTENs otherwise,
// keeping the connection: PostgreSQL signals every session that listens
// on any channel of the database for every NOTIFY, so a fleet whose idle
// supervisors all listened paid for each queued job once per supervisor.
func listenPostgres(ctx context.Context, dsn string, w Watch) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("connect for LISTEN: %w", err)
	}
	if w.WorkerID != "" {
		// The queue's trigger wakes this supervisor only while this
		// connection is there under its name, listening (listeningSQL).
		cfg.RuntimeParams["application_name"] = AppName(w.WorkerID)
	}
	// A wait for notifications is interrupted by a deadline on the socket,
	// which leaves the session usable; the default handler would also send
	// the server a cancel request, which could hit the next statement.
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect for LISTEN: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	own := ""
	channels := []string{notifyChannel, controlChannel}
	if w.WorkerID != "" {
		own = WakeChannel(w.WorkerID)
		channels = append(channels, own)
	}
	listen := ""
	for _, ch := range channels {
		listen += "LISTEN " + pgx.Identifier{ch}.Sanitize() + "; "
	}
	// Connected is "wake-ups work" for the caller (its idle polling may be
	// slow) even before it listens: the supervisors on duty hear the queue.
	w.Wake()
	listening := false
	for {
		if want := w.Listen == nil || w.Listen(); want != listening {
			// One round trip either way. The trigger tells a listening
			// session by its last statement (listeningSQL), so LISTEN
			// comes last and UNLISTEN leaves a statement that is not one.
			order, what := listen, "LISTEN"
			if !want {
				order, what = "UNLISTEN *", "UNLISTEN"
			}
			if _, err := conn.PgConn().Exec(ctx, order).ReadAll(); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			listening = want
			// Anything queued or cancelled while we were not listening is
			// found by this claim and this check, and a leader's step-down
			// told meanwhile by a look at the leadership (a supervisor
			// started just as the leader stopped waited for its next beat:
			// 10 s, seen under load). A wake-up sent to us just before
			// UNLISTEN is caught by the claim too.
			w.Wake()
			if want {
				w.Cancelled(JobRef{})
				w.LeaderLeft()
			}
		}
		n, err := waitNotification(ctx, conn, listening, w.ListenChanged)
		if err != nil {
			return err
		}
		if n == nil {
			continue // whether to listen may have changed
		}
		switch n.Channel {
		case own:
			w.Directed()
		case controlChannel:
			if isLeaderLeft(n.Payload) {
				w.LeaderLeft()
			} else if ref, ok := parseControl(n.Payload); ok {
				w.Cancelled(ref)
			}
		default:
			w.Wake()
		}
	}
}

// waitNotification returns the next notification, or nil when changed
// fires first (or at once, not listening, when it does).
func waitNotification(ctx context.Context, conn *pgx.Conn, listening bool, changed <-chan struct{}) (*pgconn.Notification, error) {
	if !listening {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
			return nil, nil
		}
	}
	waitCtx, stop := context.WithCancel(ctx)
	defer stop()
	interrupted := make(chan struct{})
	go func() {
		select {
		case <-changed:
			close(interrupted)
			stop()
		case <-waitCtx.Done():
		}
	}()
	n, err := conn.WaitForNotification(waitCtx)
	stop()
	if err != nil {
		select {
		case <-interrupted:
			if ctx.Err() == nil {
				return nil, nil
			}
		default:
		}
		return nil, fmt.Errorf("wait for notification: %w", err)
	}
	return n, nil
}

// isLeaderLeft reads StepDown's control notification.
func isLeaderLeft(payload string) bool {
	var msg struct{ Action string }
	return json.Unmarshal([]byte(payload), &msg) == nil && msg.Action == "leader"
}

// parseControl reads a control notification; ok is false for an order this
// version does not know.
func parseControl(payload string) (JobRef, bool) {
	var msg struct{ Action, Kind, ID string }
	if json.Unmarshal([]byte(payload), &msg) != nil || msg.Action != "cancel" || msg.ID == "" {
		return JobRef{}, false
	}
	switch Kind(msg.Kind) {
	case KindRun, KindBuild:
		return JobRef{Kind: Kind(msg.Kind), ID: msg.ID}, true
	}
	return JobRef{}, false
}

// watchSQLite wakes on every write another connection makes to the database
// (in WAL mode the -wal file; otherwise the file itself), through inotify on
// the folder so a recreated -wal file is still seen.
func watchSQLite(ctx context.Context, dbPath string, w Watch) error {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	file := os.NewFile(uintptr(fd), "inotify")
	defer file.Close()
	dir, base := filepath.Dir(dbPath), filepath.Base(dbPath)
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_MODIFY|syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	stop := context.AfterFunc(ctx, func() { file.SetReadDeadline(time.Now()) })
	defer stop()
	tell := func() {
		if ctx.Err() == nil {
			w.Wake()
			w.Cancelled(JobRef{})
			w.LeaderLeft()
		}
	}
	// inotify sees a commit when its last frame reaches the -wal file; the
	// writer publishes it to readers a moment later, in the wal-index
	// (shared memory, which inotify does not see). A look at once can miss
	// the commit, and no later event comes: seen in e2e as a run found at
	// the next beat, seconds late. So each burst of writes is told twice,
	// at once and sqliteSettle after its last event.
	again := time.AfterFunc(time.Hour, tell)
	again.Stop()
	defer again.Stop()
	buf := make([]byte, 64*(syscall.SizeofInotifyEvent+syscall.NAME_MAX+1))
	for {
		n, err := file.Read(buf)
		if err != nil {
			return fmt.Errorf("read inotify: %w", err)
		}
		if touches(buf[:n], base) {
			tell()
			again.Reset(sqliteSettle)
		}
	}
}

// sqliteSettle is how long after a write's last inotify event the watcher
// tells it again (see watchSQLite): far longer than a writer takes from its
// last frame to the wal-index, short against the wake-up's promise.
const sqliteSettle = 50 * time.Millisecond

// touches reports whether any inotify event in buf names the database or
// its WAL.
func touches(buf []byte, base string) bool {
	for off := 0; off+syscall.SizeofInotifyEvent <= len(buf); {
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameStart := off + syscall.SizeofInotifyEvent
		nameEnd := nameStart + int(ev.Len)
		if nameEnd > len(buf) {
			return false
		}
		name := string(trimNUL(buf[nameStart:nameEnd]))
		if name == base || name == base+"-wal" {
			return true
		}
		off = nameEnd
	}
	return false
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// NextAvailable returns how long until the soonest job that is waiting for
// its available_at (a retry in backoff) becomes claimable, on the database's
// clock; ok is false when none waits.
func (s *Store) NextAvailable(ctx context.Context) (time.Duration, bool, error) {
	var next []sql.NullFloat64
	err := s.db.WithContext(ctx).Raw(s.dialect.untilSQL(`SELECT MIN(t) FROM (
		SELECT MIN(available_at) AS t FROM runs WHERE status = 'queued' AND available_at > ` + s.dialect.nowSQL() + `
		UNION ALL
		SELECT MIN(available_at) AS t FROM builds WHERE status = 'queued' AND available_at > ` + s.dialect.nowSQL() + `) AS waiting`)).
		Scan(&next).Error
	if err != nil {
		return 0, false, fmt.Errorf("find next available job: %w", err)
	}
	if len(next) == 0 || !next[0].Valid {
		return 0, false, nil
	}
	return time.Duration(next[0].Float64 * float64(time.Second)), true, nil
}
