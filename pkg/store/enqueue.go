package store

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// NewID returns a random UUID (version 4), the ADE API's id format.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// The inserts below write rows the way the ADE API does, for operators and
// tests: they fill the API's NOT NULL columns so they work on its database too.

// EnsureWorkspace inserts a workspaces row when the database has that table
// (an ADE API database) and the row is missing.
func (s *Store) EnsureWorkspace(ctx context.Context, id string, now time.Time) error {
	db := s.db.WithContext(ctx)
	if ok, err := s.tableExists(ctx, "workspaces"); err != nil || !ok {
		return err
	}
	var n int64
	if err := db.Raw(`SELECT COUNT(*) FROM workspaces WHERE id = ?`, id).Scan(&n).Error; err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	return db.Exec(`INSERT INTO workspaces (id, name, slug, settings, created_at, updated_at) VALUES (?, ?, ?, '{}', ?, ?)`,
		id, id, id, s.ts(now), s.ts(now)).Error
}

// NewConfiguration describes a configurations row to insert.
type NewConfiguration struct {
	ID, WorkspaceID, DisplayName, ContentDigest string
}

// InsertConfiguration adds a draft configuration.
func (s *Store) InsertConfiguration(ctx context.Context, c NewConfiguration, now time.Time) error {
	return s.db.WithContext(ctx).Exec(`INSERT INTO configurations (id, workspace_id, display_name, status, content_digest, created_at, updated_at)
		VALUES (?, ?, ?, 'draft', ?, ?, ?)`, c.ID, c.WorkspaceID, c.DisplayName, nullIfEmpty(c.ContentDigest), s.ts(now), s.ts(now)).Error
}

// NewDocument describes a documents row to insert.
type NewDocument struct {
	ID, WorkspaceID, OriginalFilename, ContentType, StoredURI, Sha256 string
	ByteSize                                                          int64
}

// InsertDocument adds an uploaded document.
func (s *Store) InsertDocument(ctx context.Context, d NewDocument, now time.Time) error {
	return s.db.WithContext(ctx).Exec(`INSERT INTO documents (id, workspace_id, original_filename, content_type, byte_size,
		sha256, stored_uri, status, expires_at, created_at, updated_at, version)
		VALUES (?, ?, ?, ?, ?, ?, ?, 'uploaded', ?, ?, ?, 1)`,
		d.ID, d.WorkspaceID, d.OriginalFilename, nullIfEmpty(d.ContentType), d.ByteSize, d.Sha256, d.StoredURI,
		s.ts(now.AddDate(0, 0, 30)), s.ts(now), s.ts(now)).Error
}

// NewBuild describes a builds row to insert.
type NewBuild struct {
	WorkspaceID, ConfigurationID, Fingerprint, EngineSpec, ConfigDigest string
	MaxAttempts                                                         int
}

// EnqueueBuild queues a build, or reuses the build of the same configuration
// and fingerprint (a unique pair): a failed or cancelled one is queued again,
// any other is returned as it is. It returns the build id and whether a new
// row was made.
func (s *Store) EnqueueBuild(ctx context.Context, b NewBuild, now time.Time) (string, bool, error) {
	var id string
	created := false
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var existing Build
		err := first(tx.Raw(`SELECT id, status FROM builds WHERE configuration_id = ? AND fingerprint = ?`, b.ConfigurationID, b.Fingerprint), &existing)
		switch {
		case err == nil:
			id = existing.ID
			if existing.Status != StatusFailed && existing.Status != StatusCancelled {
				return nil
			}
			return tx.Exec(`UPDATE builds SET status = 'queued', attempt_count = 0, error_message = NULL, exit_code = NULL,
				available_at = ?, claimed_by = NULL, claim_expires_at = NULL, started_at = NULL, finished_at = NULL WHERE id = ?`,
				s.ts(now), id).Error
		case !errors.Is(err, ErrNotFound):
			return err
		}
		id, created = NewID(), true
		return tx.Exec(`INSERT INTO builds (id, workspace_id, configuration_id, fingerprint, engine_spec, config_digest,
			status, created_at, available_at, attempt_count, max_attempts)
			VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, 0, ?)`,
			id, b.WorkspaceID, b.ConfigurationID, b.Fingerprint, nullIfEmpty(b.EngineSpec), nullIfEmpty(b.ConfigDigest),
			s.ts(now), s.ts(now), b.MaxAttempts).Error
	})
	return id, created, err
}

// NewRun describes a runs row to insert.
type NewRun struct {
	WorkspaceID, ConfigurationID, DocumentID string
	// BuildID empty means: the configuration's newest build that is not
	// failed or cancelled, if any.
	BuildID         string
	RunOptions      json.RawMessage
	InputSheetNames []string
	MaxAttempts     int
	AvailableAt     time.Time // zero means now
}

// EnqueueRun queues a run and returns its id.
func (s *Store) EnqueueRun(ctx context.Context, r NewRun, now time.Time) (string, error) {
	db := s.db.WithContext(ctx)
	var buildID any
	if r.BuildID != "" {
		buildID = r.BuildID
	} else {
		var b Build
		err := first(db.Raw(`SELECT id FROM builds WHERE configuration_id = ? AND status NOT IN ('failed', 'cancelled')
			ORDER BY created_at DESC LIMIT 1`, r.ConfigurationID), &b)
		if err == nil {
			buildID = b.ID
		} else if !errors.Is(err, ErrNotFound) {
			return "", err
		}
	}
	var sheets any
	if len(r.InputSheetNames) > 0 {
		j, _ := json.Marshal(r.InputSheetNames)
		sheets = string(j)
	}
	var opts any
	if len(r.RunOptions) > 0 {
		opts = string(r.RunOptions)
	}
	avail := r.AvailableAt
	if avail.IsZero() {
		avail = now
	}
	id := NewID()
	err := db.Exec(`INSERT INTO runs (id, configuration_id, workspace_id, build_id, input_document_id, input_sheet_names,
		status, created_at, available_at, run_options, attempt_count, max_attempts)
		VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, 0, ?)`,
		id, r.ConfigurationID, r.WorkspaceID, buildID, r.DocumentID, sheets, s.ts(now), s.ts(avail), opts, r.MaxAttempts).Error
	if err != nil {
		return "", fmt.Errorf("insert run: %w", err)
	}
	return id, nil
}
