package store

import (
	"time"

	"gorm.io/gorm"
)

// The two methods below are for tests only (pkg/store's own, test/e2e,
// test/bench, pkg/gc): they arrange and read rows with raw SQL. Production
// code goes through the Store's methods, which hold every statement.

// TestDB is the gorm handle of the store, for tests only.
func (s *Store) TestDB() *gorm.DB { return s.db }

// TestTime encodes t as this database stores timestamps, for tests only.
func (s *Store) TestTime(t time.Time) any { return s.ts(t) }
