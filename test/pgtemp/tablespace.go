package pgtemp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"github.com/ade-org/ade-worker/pkg/store"
)

// The tests' databases live in a tablespace on a RAM-backed folder
// (/dev/shm) when the server runs on this host and the folder can be given
// to the server's user: on this VM's ext4, creating the ~370 files of a
// database or the tables of a schema cost the server most of its CPU in
// the tests (the allocator searches past every recently deleted inode), and
// `go test ./pkg/store` went from about 5 s to 3.3 s. The server, its SQL
// and its WAL are the same; only where the test databases' files lie
// changes. ADE_TEST_POSTGRES_TMPFS=off keeps them in the default
// tablespace; so does any step below that fails. The bench never uses it:
// it measures the disk a deployment has.

const (
	ramRoot           = "/dev/shm"
	ramPrefix         = "ade_pgtemp_" // tablespaces' and their folders' names
	ramLockName       = "owner.lock"  // held by the process that uses the tablespace
	ramTablespaceMode = "ADE_TEST_POSTGRES_TMPFS"
)

var ramSpaces perAdmin[ramSpace]

type ramSpace struct {
	once sync.Once
	name string   // "" when the default tablespace is used
	dir  string   // its folder
	lock *os.File // flocked while this process lives
}

// ramTablespace returns this process's tablespace on the server of conn
// (made on first use), or "" for the default one.
func ramTablespace(ctx context.Context, admin string, conn *pgx.Conn) string {
	if os.Getenv(ramTablespaceMode) == "off" {
		return ""
	}
	rs := ramSpaces.get(admin, func() *ramSpace { return &ramSpace{} })
	rs.once.Do(func() { rs.make(ctx, conn) })
	return rs.name
}

func (rs *ramSpace) make(ctx context.Context, conn *pgx.Conn) {
	var fs unix.Statfs_t
	if unix.Statfs(ramRoot, &fs) != nil || fs.Type != unix.TMPFS_MAGIC {
		return
	}
	owner, ok := localServerOwner(ctx, conn)
	if !ok {
		return
	}
	dropStaleRAMTablespaces(ctx, conn)
	name := ramPrefix + strings.ReplaceAll(store.NewID(), "-", "")[:16]
	dir := filepath.Join(ramRoot, name)
	if os.Mkdir(dir, 0o700) != nil {
		return
	}
	lock, err := os.OpenFile(filepath.Join(dir, ramLockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = flockNB(lock)
	}
	if err == nil {
		err = os.Chown(dir, int(owner.Uid), int(owner.Gid))
	}
	if err == nil {
		_, err = conn.Exec(ctx, "CREATE TABLESPACE "+name+" LOCATION '"+dir+"'")
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		os.RemoveAll(dir)
		return
	}
	rs.name, rs.dir, rs.lock = name, dir, lock
}

// localServerOwner returns the owner of the server's data directory when
// the server of conn runs on this host: its data directory is here and
// the backend serving conn is a child of the postmaster that directory
// names (the same path on another host would not pass).
func localServerOwner(ctx context.Context, conn *pgx.Conn) (*syscall.Stat_t, bool) {
	var dataDir string
	var backend int
	if conn.QueryRow(ctx, "SELECT current_setting('data_directory'), pg_backend_pid()").Scan(&dataDir, &backend) != nil {
		return nil, false
	}
	pidFile, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return nil, false
	}
	postmaster, _, _ := strings.Cut(string(pidFile), "\n")
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", backend))
	if err != nil {
		return nil, false
	}
	// Fields after the command's closing parenthesis: state, ppid, ...
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(fields) < 2 || fields[1] != strings.TrimSpace(postmaster) {
		return nil, false
	}
	info, err := os.Stat(dataDir)
	if err != nil {
		return nil, false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return st, ok
}

// dropStaleRAMTablespaces drops the tablespaces of test processes that
// ended without dropping theirs (killed), with the databases they left in
// them: the folder's lock is free, or the folder is gone (a reboot empties
// /dev/shm). Only the process that made a tablespace puts databases in it.
func dropStaleRAMTablespaces(ctx context.Context, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT spcname, pg_tablespace_location(oid),
		ARRAY(SELECT datname::text FROM pg_database WHERE dattablespace = t.oid)
		FROM pg_tablespace t WHERE spcname LIKE '`+ramPrefix+`%'`)
	if err != nil {
		return
	}
	type space struct {
		name, dir string
		dbs       []string
	}
	spaces, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (sp space, err error) {
		return sp, row.Scan(&sp.name, &sp.dir, &sp.dbs)
	})
	if err != nil {
		return
	}
	for _, sp := range spaces {
		if !strings.HasPrefix(sp.dir, ramRoot+"/"+ramPrefix) {
			continue
		}
		if f, err := os.Open(filepath.Join(sp.dir, ramLockName)); err == nil {
			busy := flockNB(f) != nil
			f.Close()
			if busy {
				continue
			}
		} else if _, err := os.Stat(sp.dir); err == nil {
			continue // no lock file yet: being made
		}
		for _, db := range sp.dbs {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
		}
		dropRAMSpace(ctx, conn, sp.name, sp.dir)
	}
}

// dropRAMTablespaces drops this process's tablespaces (their databases
// are dropped first) and their folders.
func dropRAMTablespaces() {
	for admin, rs := range ramSpaces.takeAll() {
		if rs.name == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if conn, err := pgx.Connect(ctx, admin); err == nil {
			dropRAMSpace(ctx, conn, rs.name, rs.dir)
			conn.Close(ctx)
		}
		cancel()
		rs.lock.Close()
	}
}

// flockNB takes f's lock or fails at once.
func flockNB(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) }

// dropRAMSpace drops the tablespace name and, once it is gone, its folder.
func dropRAMSpace(ctx context.Context, conn *pgx.Conn, name, dir string) {
	if _, err := conn.Exec(ctx, "DROP TABLESPACE "+pgx.Identifier{name}.Sanitize()); err == nil {
		os.RemoveAll(dir)
	}
}
