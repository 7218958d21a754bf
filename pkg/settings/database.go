package settings

import (
	"errors"
	"net/url"
	"path/filepath"
	"strings"
)

// Driver names a supported database.
type Driver string

// Supported databases.
const (
	SQLite   Driver = "sqlite"
	Postgres Driver = "postgres"
)

// DatabaseURL is a parsed ADE_DATABASE_URL.
type DatabaseURL struct {
	Driver Driver
	// Path is the SQLite database file, absolute. Empty for PostgreSQL.
	Path string
	// DSN is the PostgreSQL connection URL with scheme "postgres://" and no
	// "+driver" suffix. Empty for SQLite.
	DSN string
}

// Name is the database as operators know it, safe to show: the SQLite
// file's path, or host:port/dbname for PostgreSQL (never user or password).
func (u DatabaseURL) Name() string {
	if u.Driver == SQLite {
		return u.Path
	}
	p, err := url.Parse(u.DSN)
	if err != nil {
		return "postgresql database (unparsable URL)"
	}
	host := p.Host
	if host == "" {
		host = "localhost"
	}
	return host + "/" + strings.TrimPrefix(p.Path, "/")
}

// DefaultDatabaseURL is the database when ADE_DATABASE_URL is unset or empty.
const DefaultDatabaseURL = "sqlite:///./data/db/ade.sqlite"

const wantDatabaseURL = "want sqlite:///relative/path, sqlite:////absolute/path " +
	"or postgresql://user:password@host:port/database (a +driver suffix such as sqlite+pysqlite or postgresql+psycopg is accepted)"

// ParseDatabaseURL parses a database URL written the way the ADE API writes
// it (SQLAlchemy style). SQLite URLs are "sqlite:///relative/path" or
// "sqlite:////absolute/path"; the path is made absolute. In-memory databases
// are refused: every worker process must share one file. PostgreSQL URLs may
// use the schemes postgres, postgresql or postgresql+<driver>. The error is
// an *Error that names ADE_DATABASE_URL and never shows a password.
func ParseDatabaseURL(raw string) (DatabaseURL, error) {
	raw = strings.TrimSpace(raw)
	fail := func(want string) (DatabaseURL, error) {
		return DatabaseURL{}, &Error{Var: envDatabaseURL, Value: redactURL(raw), Want: want}
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return fail(wantDatabaseURL)
	}
	base, _, _ := strings.Cut(strings.ToLower(scheme), "+")
	switch base {
	case "sqlite":
		path, want := sqlitePath(rest)
		if want != "" {
			return fail(want)
		}
		return DatabaseURL{Driver: SQLite, Path: path}, nil
	case "postgres", "postgresql":
		dsn := "postgres://" + rest
		if _, err := url.Parse(dsn); err != nil {
			return fail("want a valid URL postgresql://user:password@host:port/database (" + urlReason(err) + ")")
		}
		return DatabaseURL{Driver: Postgres, DSN: dsn}, nil
	default:
		return fail(wantDatabaseURL)
	}
}

// sqlitePath turns the part after "sqlite://" into an absolute file path, or
// says what was expected instead.
func sqlitePath(rest string) (path, want string) {
	rest, _, _ = strings.Cut(rest, "?") // SQLAlchemy connect args; pragmas have their own settings
	if !strings.HasPrefix(rest, "/") {
		return "", "want a database file: sqlite:///relative/path or sqlite:////absolute/path (three slashes, then the path)"
	}
	p := rest[1:]
	if p == "" || p == ":memory:" || strings.HasPrefix(p, "file::memory:") {
		return "", "want a database file, not an in-memory database: every worker process must share one file " +
			"(sqlite:///relative/path or sqlite:////absolute/path)"
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", "want a usable file path: " + err.Error()
	}
	return abs, ""
}

// urlReason is what is wrong with a URL, without the URL, which may hold a
// password.
func urlReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "malformed URL"
}

// redactURL hides any password in a URL shown in an error.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if scheme, _, ok := strings.Cut(raw, "://"); ok {
			return scheme + "://..."
		}
		return "..."
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		return u.Redacted()
	}
	return raw
}
