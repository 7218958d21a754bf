package settings

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDatabaseURL(t *testing.T) {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		raw  string
		want DatabaseURL
	}{
		{"sqlite:///./data/db/ade.sqlite", DatabaseURL{Driver: SQLite, Path: abs("data/db/ade.sqlite")}},
		{"sqlite:///ade.sqlite", DatabaseURL{Driver: SQLite, Path: abs("ade.sqlite")}},
		{"sqlite:////var/lib/ade/ade.sqlite", DatabaseURL{Driver: SQLite, Path: "/var/lib/ade/ade.sqlite"}},
		{"sqlite+pysqlite:////var/lib/ade/ade.sqlite", DatabaseURL{Driver: SQLite, Path: "/var/lib/ade/ade.sqlite"}},
		{"sqlite:///db.sqlite?check_same_thread=false", DatabaseURL{Driver: SQLite, Path: abs("db.sqlite")}},
		{" SQLite:////a/b.db ", DatabaseURL{Driver: SQLite, Path: "/a/b.db"}},
		{"postgres://ade:pw@db:5432/ade", DatabaseURL{Driver: Postgres, DSN: "postgres://ade:pw@db:5432/ade"}},
		{"postgresql://ade:pw@db/ade?sslmode=disable", DatabaseURL{Driver: Postgres, DSN: "postgres://ade:pw@db/ade?sslmode=disable"}},
		{"postgresql+psycopg://ade@db/ade", DatabaseURL{Driver: Postgres, DSN: "postgres://ade@db/ade"}},
		{"postgresql+asyncpg://ade@db/ade", DatabaseURL{Driver: Postgres, DSN: "postgres://ade@db/ade"}},
	}
	for _, tt := range tests {
		got, err := ParseDatabaseURL(tt.raw)
		if err != nil || got != tt.want {
			t.Errorf("ParseDatabaseURL(%q) = %+v, %v; want %+v", tt.raw, got, err, tt.want)
		}
	}
}

func TestParseDatabaseURLErrors(t *testing.T) {
	tests := []struct {
		raw  string
		want []string // what the error must mention
	}{
		{"", []string{`""`, "sqlite:///", "postgresql://"}},
		{"ade.sqlite", []string{`"ade.sqlite"`, "sqlite:///", "postgresql://"}},
		{"sqlite://", []string{`"sqlite://"`, "sqlite:///relative/path"}},
		{"sqlite:///", []string{"in-memory", "sqlite:///relative/path"}},
		{"sqlite://:memory:", []string{"sqlite:///relative/path"}},
		{"sqlite:///:memory:", []string{"in-memory", "sqlite:///relative/path"}},
		{"sqlite://host/ade.sqlite", []string{"three slashes"}},
		{"mysql://ade:secret@db/ade", []string{"mysql://ade:xxxxx@db/ade", "sqlite:///", "postgresql://"}},
		{"http://example.com/db", []string{"sqlite:///", "postgresql://"}},
		{"postgresql://ade:secret@db:port/ade", []string{"postgresql://...", "invalid port"}},
	}
	for _, tt := range tests {
		_, err := ParseDatabaseURL(tt.raw)
		var se *Error
		if !errors.As(err, &se) || se.Var != "ADE_DATABASE_URL" {
			t.Errorf("ParseDatabaseURL(%q) error = %v, want an *Error naming ADE_DATABASE_URL", tt.raw, err)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "secret") {
			t.Errorf("ParseDatabaseURL(%q) error %q shows the password", tt.raw, msg)
		}
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("ParseDatabaseURL(%q) error %q does not mention %s", tt.raw, msg, w)
			}
		}
	}
}
