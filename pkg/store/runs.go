package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"gorm.io/gorm"

	"github.com/ade-org/ade-worker/pkg/summary"
)

// RunContext is what the supervisor reads to prepare a claimed run.
type RunContext struct {
	Configuration *Configuration // nil when the row is missing
	Document      *Document      // nil when the row is missing
	Build         *Build         // nil when the run has no build or the row is missing
}

// Configuration is the part of a configurations row the worker uses.
type Configuration struct {
	ID          string
	WorkspaceID string
	Status      string
}

// Document is the part of a documents row the worker uses.
type Document struct {
	ID               string
	WorkspaceID      string
	OriginalFilename string
	StoredURI        string
	Status           string
	Version          int
}

// Build is the part of a builds row the worker uses.
type Build struct {
	ID              string
	WorkspaceID     string
	ConfigurationID string
	Fingerprint     string
	EngineSpec      sql.NullString
	Status          Status
	AttemptCount    int
}

// LoadRunContext reads the rows a run refers to. Missing rows are nil, not
// errors: the caller fails the run with a message that names what is missing.
// One statement, because on PostgreSQL every statement is a round trip; none
// when the claim read them already (r.Loaded).
func (s *Store) LoadRunContext(ctx context.Context, r *ClaimedRun) (*RunContext, error) {
	if r.Loaded != nil {
		return r.Loaded, nil
	}
	var row runContextRow
	buildID := r.BuildID // NULL matches no build
	err := s.db.WithContext(ctx).Raw(`SELECT `+runContextColumns+`
FROM (SELECT 1 AS one) AS q
LEFT JOIN configurations c ON c.id = ?
LEFT JOIN documents d ON d.id = ?
LEFT JOIN builds b ON b.id = ?`, r.ConfigurationID, r.InputDocumentID, buildID).Scan(&row).Error
	if err != nil {
		return nil, fmt.Errorf("read the run's rows: %w", err)
	}
	return row.context(), nil
}

// runContextColumns are the columns of runContextRow, read from the
// configuration c, the document d and the build b of a run.
const runContextColumns = `c.id AS c_id, c.workspace_id AS c_workspace_id, c.status AS c_status,
	d.id AS d_id, d.workspace_id AS d_workspace_id, d.original_filename AS d_original_filename,
	d.stored_uri AS d_stored_uri, d.status AS d_status, d.version AS d_version,
	b.id AS b_id, b.workspace_id AS b_workspace_id, b.configuration_id AS b_configuration_id,
	b.fingerprint AS b_fingerprint, b.engine_spec AS b_engine_spec, b.status AS b_status,
	b.attempt_count AS b_attempt_count`

// runContextRow is a RunContext as one row of outer joins.
type runContextRow struct {
	CID               sql.NullString `gorm:"column:c_id"`
	CWorkspaceID      sql.NullString `gorm:"column:c_workspace_id"`
	CStatus           sql.NullString `gorm:"column:c_status"`
	DID               sql.NullString `gorm:"column:d_id"`
	DWorkspaceID      sql.NullString `gorm:"column:d_workspace_id"`
	DOriginalFilename sql.NullString `gorm:"column:d_original_filename"`
	DStoredURI        sql.NullString `gorm:"column:d_stored_uri"`
	DStatus           sql.NullString `gorm:"column:d_status"`
	DVersion          sql.NullInt64  `gorm:"column:d_version"`
	BID               sql.NullString `gorm:"column:b_id"`
	BWorkspaceID      sql.NullString `gorm:"column:b_workspace_id"`
	BConfigurationID  sql.NullString `gorm:"column:b_configuration_id"`
	BFingerprint      sql.NullString `gorm:"column:b_fingerprint"`
	BEngineSpec       sql.NullString `gorm:"column:b_engine_spec"`
	BStatus           sql.NullString `gorm:"column:b_status"`
	BAttemptCount     sql.NullInt64  `gorm:"column:b_attempt_count"`
}

func (row *runContextRow) context() *RunContext {
	out := &RunContext{}
	if row.CID.Valid {
		out.Configuration = &Configuration{ID: row.CID.String, WorkspaceID: row.CWorkspaceID.String, Status: row.CStatus.String}
	}
	if row.DID.Valid {
		out.Document = &Document{ID: row.DID.String, WorkspaceID: row.DWorkspaceID.String,
			OriginalFilename: row.DOriginalFilename.String, StoredURI: row.DStoredURI.String,
			Status: row.DStatus.String, Version: int(row.DVersion.Int64)}
	}
	if row.BID.Valid {
		out.Build = &Build{ID: row.BID.String, WorkspaceID: row.BWorkspaceID.String,
			ConfigurationID: row.BConfigurationID.String, Fingerprint: row.BFingerprint.String,
			EngineSpec: row.BEngineSpec, Status: Status(row.BStatus.String), AttemptCount: int(row.BAttemptCount.Int64)}
	}
	return out
}

// first scans the first row of q into dest, or returns ErrNotFound.
func first(q *gorm.DB, dest any) error {
	res := q.Scan(dest)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// DocumentStatus is a document's state as runs move it.
type DocumentStatus string

// Document states the worker sets.
const (
	DocumentProcessing DocumentStatus = "processing"
	DocumentProcessed  DocumentStatus = "processed"
	DocumentFailed     DocumentStatus = "failed"
)

// StartDocument marks the run's document processing (fenced on the run).
func (s *Store) StartDocument(ctx context.Context, f Fence, documentID string) error {
	if q := s.dialect.moveDocumentSQL(true); q != "" {
		args := moveDocumentArgs(documentID, f.ID, DocumentProcessing)
		args["worker"], args["attempt"] = f.Worker, f.Attempt
		var held int
		if err := s.db.WithContext(ctx).Raw(q, args).Scan(&held).Error; err != nil {
			return fmt.Errorf("update document %s: %w", documentID, err)
		}
		if held == 0 {
			return ErrLeaseLost
		}
		return nil
	}
	return s.tx(ctx, func(tx *gorm.DB) error {
		// A no-op fenced update proves the run is still ours before the
		// document is touched.
		if err := s.fencedUpdate(tx, f, "claim_expires_at = claim_expires_at"); err != nil {
			return err
		}
		return s.moveDocument(tx, documentID, f.ID, DocumentProcessing)
	})
}

func moveDocumentArgs(documentID, runID string, status DocumentStatus) map[string]any {
	return map[string]any{"doc": documentID, "run": runID, "status": string(status)}
}

// moveDocument sets a document's status, bumps its version and records the
// change in document_changes so the ADE API's change feed sees it, at the
// database's now. A
// missing document row is not an error: the run's own status says why.
func (s *Store) moveDocument(tx *gorm.DB, documentID, runID string, status DocumentStatus) error {
	if q := s.dialect.moveDocumentSQL(false); q != "" {
		var held int
		if err := tx.Raw(q, moveDocumentArgs(documentID, runID, status)).Scan(&held).Error; err != nil {
			return fmt.Errorf("update document %s: %w", documentID, err)
		}
		return nil
	}
	var row struct {
		WorkspaceID string
		Version     int
	}
	now := s.dialect.nowSQL()
	res := tx.Raw(`UPDATE documents SET status = ?, version = version + 1, updated_at = `+now+`, last_run_at = `+now+`
		WHERE id = ? RETURNING workspace_id, version`, string(status), documentID).Scan(&row)
	if res.Error != nil {
		return fmt.Errorf("update document %s: %w", documentID, res.Error)
	}
	if res.RowsAffected == 0 {
		return nil
	}
	payload, _ := json.Marshal(map[string]any{"status": status, "version": row.Version, "run_id": runID})
	err := tx.Exec(`INSERT INTO document_changes (workspace_id, document_id, type, document_version, payload, occurred_at)
		VALUES (?, ?, 'upsert', ?, ?, `+now+`)`, row.WorkspaceID, documentID, row.Version, string(payload)).Error
	if err != nil {
		return fmt.Errorf("record document change %s: %w", documentID, err)
	}
	return nil
}

// RunOutcome is the terminal state of a run.
type RunOutcome struct {
	Succeeded bool
	ExitCode  *int
	Error     string
	// OutputPath is relative to the run folder; empty for none.
	OutputPath string
	Summary    *summary.Summary
	// DocumentID, when set, moves that document to processed or failed.
	DocumentID string
}

// FinishRun writes a run's terminal status, its results and its document's
// status in one transaction, fenced on the claim.
func (s *Store) FinishRun(ctx context.Context, f Fence, o RunOutcome) error {
	doc := DocumentFailed
	if o.Succeeded {
		doc = DocumentProcessed
	}
	if q := s.dialect.finishRunSQL(o.DocumentID != ""); q != "" {
		args := moveDocumentArgs(o.DocumentID, f.ID, doc)
		args["worker"], args["attempt"] = f.Worker, f.Attempt
		args["end"], args["code"] = string(EndStatus(KindRun, o.Succeeded)), o.ExitCode
		args["error"], args["output"] = nullIfEmpty(o.Error), nullIfEmpty(o.OutputPath)
		if err := resultRowsJSON(args, f.ID, o.Summary); err != nil {
			return err
		}
		var ended int
		if err := s.db.WithContext(ctx).Raw(q, args).Scan(&ended).Error; err != nil {
			return fmt.Errorf("finish run %s: %w", f.ID, err)
		}
		if ended == 0 {
			return ErrLeaseLost
		}
		return nil
	}
	return s.tx(ctx, func(tx *gorm.DB) error {
		err := s.fencedUpdate(tx, f, `status = ?, exit_code = ?, completed_at = `+s.dialect.nowSQL()+`, error_message = ?,
			output_path = ?, claim_expires_at = NULL`,
			EndStatus(KindRun, o.Succeeded), o.ExitCode, nullIfEmpty(o.Error), nullIfEmpty(o.OutputPath))
		if err != nil {
			return err
		}
		if err := s.replaceRunResults(tx, f.ID, o.Summary); err != nil {
			return err
		}
		if o.DocumentID == "" {
			return nil
		}
		return s.moveDocument(tx, o.DocumentID, f.ID, doc)
	})
}

// replaceRunResults stores the engine's summary for a run; rows of an
// earlier attempt are removed first so a retry never mixes results. (Where
// the dialect has finishRunSQL, that statement does all of it instead.)
func (s *Store) replaceRunResults(tx *gorm.DB, runID string, sum *summary.Summary) error {
	for _, t := range resultTables() {
		if err := tx.Exec(`DELETE FROM `+t.name+` WHERE run_id = ?`, runID).Error; err != nil {
			return fmt.Errorf("clear the results of an earlier attempt: %w", err)
		}
	}
	return s.insertRunResults(tx, runID, sum)
}
