package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/mattn/go-sqlite3" // the driver gorm's SQLite dialector uses
)

func cpuModel() string {
	if v, ok := procValue("/proc/cpuinfo", "model name"); ok {
		return v
	}
	return "unknown CPU"
}

func memTotal() string {
	v, ok := procValue("/proc/meminfo", "MemTotal")
	if !ok {
		return "?"
	}
	kb, _ := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64)
	return fmt.Sprintf("%.1f GiB", kb/(1<<20))
}

// procValue returns the value of the first "key: value" line of a /proc
// file, trimmed (/proc/cpuinfo pads its keys with tabs).
func procValue(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

func readTrim(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(data))
}

func commandOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return name + " unavailable"
	}
	return strings.TrimSpace(string(out))
}

func sqliteVersion() string {
	db, err := sql.Open("sqlite3", ":memory:")
	if err != nil {
		return "?"
	}
	defer db.Close()
	var v string
	if err := db.QueryRow("SELECT sqlite_version()").Scan(&v); err != nil {
		return "?"
	}
	return v
}

func (b *bench) postgresVersion() string {
	if !slices.Contains(b.opts.backends, "postgres") {
		return "PostgreSQL not used"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.opts.pgAdmin)
	if err != nil {
		return "PostgreSQL unreachable"
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "PostgreSQL ?"
	}
	return "PostgreSQL " + strings.Fields(v)[0]
}

// fsType names the file system that holds path, from /proc/mounts.
func fsType(path string) string {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return "?"
	}
	defer f.Close()
	best, typ, dev := "", "?", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		mnt := fields[1]
		if (path == mnt || strings.HasPrefix(path, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) >= len(best) {
			best, typ, dev = mnt, fields[2], fields[0]
		}
	}
	// ext4 without a journal will not reuse an inode freed in the last
	// minutes, and each new file walks past every such one: every folder
	// and file a run makes then costs more the more was deleted lately
	// (BENCHMARKS.md, "what the file system costs").
	if typ == "ext4" && readTrim("/sys/fs/ext4/"+filepath.Base(dev)+"/journal_task") == "<none>" {
		typ += ", no journal: files deleted in the last minutes slow every new one; a fresh file system (--dir) measures steadier"
	}
	return typ
}

// loadAvg is the 1, 5 and 15 minute load averages: other work on the
// machine skews every figure, so the report shows it.
func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// gitDescribe names the commit the binaries are built from, and whether the
// working tree had changes.
func gitDescribe(repo string) string {
	cmd := exec.Command("git", "log", "-1", "--format=%h %cd", "--date=format:%Y-%m-%d %H:%M")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		return "unknown (no git)"
	}
	desc := strings.TrimSpace(string(out))
	st := exec.Command("git", "status", "--porcelain", "--untracked-files=no")
	st.Dir = repo
	if dirty, err := st.Output(); err == nil && len(bytes.TrimSpace(dirty)) > 0 {
		desc += " + uncommitted changes"
	}
	return "commit " + desc
}
