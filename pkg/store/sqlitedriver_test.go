package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// TestStatementCache: the caching SQLite driver gives what go-sqlite3 gives
// uncached: counts of changed rows, a statement that returns rows run as an
// Exec leaves no transaction open, the same text inside its own rows loop,
// several statements in one Exec, and more texts than the cache holds.
func TestStatementCache(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cache.db")
	dsn := "file:" + path + "?_journal_mode=WAL&_busy_timeout=200&_txlock=immediate"
	db, err := sql.Open(sqliteDriverName, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	mustExec := func(q string, args ...any) sql.Result {
		t.Helper()
		res, err := db.ExecContext(ctx, q, args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return res
	}
	mustExec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE u (id INTEGER PRIMARY KEY)`)
	mustExec(`INSERT INTO u (id) VALUES (1)`) // the second statement of the script ran
	for i := 0; i < 5; i++ {
		if id, _ := mustExec(`INSERT INTO t (v) VALUES (?)`, "x").LastInsertId(); id != int64(i+1) {
			t.Errorf("insert %d: LastInsertId = %d", i, id)
		}
	}
	if n, _ := mustExec(`UPDATE t SET v = ? WHERE id > ?`, "y", 2).RowsAffected(); n != 3 {
		t.Errorf("update: RowsAffected = %d, want 3", n)
	}
	if n, _ := mustExec(`UPDATE t SET v = ? WHERE id > ?`, "z", 4).RowsAffected(); n != 1 {
		t.Errorf("the same update again: RowsAffected = %d, want 1", n)
	}

	// An UPDATE ... RETURNING run as an Exec must not keep its write
	// transaction: a second connection writes right after it.
	mustExec(`UPDATE t SET v = 'r' WHERE id = 1 RETURNING id`)
	other, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, `UPDATE t SET v = 'o' WHERE id = 2`); err != nil {
		t.Errorf("another connection cannot write after a RETURNING exec: %v", err)
	}

	// The same text queried inside its own rows loop.
	const q = `SELECT id FROM t WHERE id <= ? ORDER BY id`
	var outer, inner int
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.QueryContext(ctx, q, 3)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		outer++
		in, err := conn.QueryContext(ctx, q, id)
		if err != nil {
			t.Fatalf("the same text inside its own loop: %v", err)
		}
		for in.Next() {
			inner++
		}
		in.Close()
		// More distinct texts than the cache holds while the outer rows
		// are open: the outer statement must survive the cache's drop.
		for i := 0; i < maxCachedStmts+5; i++ {
			var n int
			if err := conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT %d + ?`, i), outer).Scan(&n); err != nil || n != i+outer {
				t.Fatalf("query %d inside the outer loop: %d %v", i, n, err)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Errorf("outer rows after the cache overflowed: %v", err)
	}
	rows.Close()
	conn.Close()
	if outer != 3 || inner != 1+2+3 {
		t.Errorf("outer %d rows, inner %d, want 3 and 6", outer, inner)
	}

	// More distinct texts than the cache holds.
	for i := 0; i < maxCachedStmts+20; i++ {
		var n int
		if err := db.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) + %d FROM t`, i)).Scan(&n); err != nil || n != 5+i {
			t.Fatalf("query %d: %d %v", i, n, err)
		}
	}
}
