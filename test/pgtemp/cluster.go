package pgtemp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a PostgreSQL server of its own, for a test that restarts or
// reconfigures the server (the shared one serves every other test at the
// same time) and for the bench's counters: initdb of the installed server
// on a free port, run as the postgres user.
type Cluster struct {
	// AdminURL is the cluster's maintenance database (trust auth).
	AdminURL string
	Port     int
	dir      string
	bin      string
	cred     *syscall.Credential
	args     []string
	cmd      *exec.Cmd
	done     chan struct{}
}

// StartCluster makes and starts a cluster; settings are extra server
// settings ("max_connections=800"). Stop removes it.
func StartCluster(ctx context.Context, settings ...string) (*Cluster, error) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		return nil, errors.New("no PostgreSQL server installed (/usr/lib/postgresql/*/bin/initdb)")
	}
	sort.Strings(bins)
	c := &Cluster{bin: filepath.Dir(bins[len(bins)-1])}
	var err error
	if c.cred, err = postgresCredential(); err != nil {
		return nil, err
	}
	// Not under a test's folder: the postgres user may not enter it.
	if c.dir, err = os.MkdirTemp("", "ade-pg-"); err != nil {
		return nil, err
	}
	if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	data := filepath.Join(c.dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(c.bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(c.dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	if c.Port, err = freePort(); err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	c.AdminURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
	c.args = []string{"-D", data, "-p", strconv.Itoa(c.Port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + c.dir}
	for _, s := range settings {
		c.args = append(c.args, "-c", s)
	}
	if err := c.start(ctx); err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	return c, nil
}

// ForTestCluster starts a cluster stopped and removed when t ends; a
// test's data need not survive a crash of the machine (fsync off).
func ForTestCluster(t testing.TB, settings ...string) *Cluster {
	t.Helper()
	c, err := StartCluster(context.Background(), append([]string{"fsync=off"}, settings...)...)
	if err != nil {
		t.Fatalf("private PostgreSQL cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// start runs the server and waits until it answers.
func (c *Cluster) start(ctx context.Context) error {
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), c.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGTERM}
	logFile, err := os.OpenFile(c.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	c.cmd, c.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(c.done) }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		conn, err := pgx.Connect(ctx, c.AdminURL)
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("private PostgreSQL exited at start (log %s)", c.LogPath())
		default:
		}
		if time.Now().After(deadline) {
			c.stopServer()
			return fmt.Errorf("private PostgreSQL did not answer within 30 s: %v (log %s)", err, c.LogPath())
		}
		time.Sleep(50 * time.Millisecond) // polls the server's start; nothing to wait on
	}
}

// Restart stops the server the fast way (clients' sessions end) and starts
// it again on the same port.
func (c *Cluster) Restart(ctx context.Context) error {
	c.stopServer()
	return c.start(ctx)
}

// Pid is the server's (the postmaster's) process id.
func (c *Cluster) Pid() int { return c.cmd.Process.Pid }

// LogPath is the server's log file.
func (c *Cluster) LogPath() string { return filepath.Join(c.dir, "server.log") }

// Stop stops the server and removes the cluster.
func (c *Cluster) Stop() {
	c.stopServer()
	os.RemoveAll(c.dir)
}

func (c *Cluster) stopServer() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	c.cmd = nil
}

// postgresCredential is the postgres user's, who must own and run the
// cluster (the server refuses to run as root).
func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("a private cluster runs as the postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// freePort is a TCP port nothing listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
