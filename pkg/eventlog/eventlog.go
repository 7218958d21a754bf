// Package eventlog writes the NDJSON events file of one job: the worker's own
// events (Emit, Append) and the engine's stdout and stderr (Pipe), one JSON
// object per line, each with the same envelope:
//
//	{"event_id":"<uuid v4>","engine_run_id":"...","timestamp":"<RFC 3339 UTC>",
//	 "level":"info","event":"run.start","message":"...","data":{...},"error":...}
//
// The job's Context (jobId, workspaceId, buildId, configurationId) is added to
// the data of every line without overwriting a key already there.
//
// A Log is safe for concurrent use: Pipe for stdout and Pipe for stderr may run
// at the same time as Emit, and every line reaches the file whole. Lines are
// buffered and handed to the operating system in whole lines only, when a Pipe
// has no more input at hand, after every Emit, on Flush and on Close.
package eventlog

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/ade-org/ade-worker/pkg/safepath"
)

// DefaultMaxLineBytes bounds one line of engine output (this package's tests
// set a smaller bound). Longer lines are cut (see Log.Pipe).
const DefaultMaxLineBytes = 4 << 20

// writeBufferBytes is the size of the Log's write buffer.
const writeBufferBytes = 256 << 10

// writers and readers pool the Logs' write buffers and the Pipes' read
// buffers: a serving jobrunner opens a Log and two Pipes a job and the
// supervisor a Log at each job's end, and fresh buffers were 450 KB a job
// to zero and fault in, and to collect.
var (
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferBytes) }}
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferBytes) }}
)

// ErrClosed is returned by writes to a Log after Close.
var ErrClosed = errors.New("eventlog: log is closed")

// Context identifies the job an events file belongs to. Its non-empty ids are
// added to the data of every event written.
type Context struct {
	JobID           string
	WorkspaceID     string
	BuildID         string
	ConfigurationID string
	// EngineRunID is the engine_run_id of the worker's own events and of
	// engine events that carry none. Empty means JobID.
	EngineRunID string
}

// Options tune a Log.
type Options struct {
	// maxLineBytes bounds one line of engine output read by Pipe, and so the
	// memory one Pipe uses. 0 means DefaultMaxLineBytes. Only this
	// package's tests set it, to reach the bound with short lines.
	maxLineBytes int
	// Root, when set, is a shared folder the events file lies below: the
	// file and its folders are opened and created from it without
	// following any symbolic link (package safepath).
	Root string
}

// Event is one worker event for Append.
type Event struct {
	Level   string // "info" when empty
	Event   string // dot-separated name, required
	Message string
	Data    map[string]any // not modified; the Context is added to a copy
	// Error becomes the envelope's "error" member; omitted when nil.
	Error any
}

// Log is the open events file of one job.
type Log struct {
	path        string
	maxLine     int
	engineRunID []byte // JSON string
	ctx         []ctxKey

	mu       sync.Mutex
	f        *os.File
	w        *bufio.Writer
	closed   bool
	writeErr error // the first failed write, for WriteErr
}

// ctxKey is one Context id as it is added to data.
type ctxKey struct {
	name   string // e.g. jobId
	quoted []byte // `"jobId"`
	value  []byte // `"<value>"`
	member []byte // `"jobId":"<value>"`
}

// Open opens the events file at path for appending, creating it and its
// parent folders when missing. If the file ends in a partial line (a
// previous writer died mid-line, or the disk filled up), that partial line
// is cut so the file ends on a complete line.
func Open(path string, c Context, opts Options) (*Log, error) {
	if opts.maxLineBytes < 0 {
		return nil, fmt.Errorf("eventlog: maxLineBytes %d is negative; use 0 for the default", opts.maxLineBytes)
	}
	maxLine := opts.maxLineBytes
	if maxLine == 0 {
		maxLine = DefaultMaxLineBytes
	}
	f, err := openFile(path, opts.Root)
	if err != nil {
		return nil, err
	}
	if err := cutPartialLine(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("eventlog: cut the partial last line of %s: %w", path, err)
	}
	runID := c.EngineRunID
	if runID == "" {
		runID = c.JobID
	}
	w := writers.Get().(*bufio.Writer)
	w.Reset(f)
	return &Log{
		path:        path,
		maxLine:     maxLine,
		engineRunID: appendString(nil, []byte(runID)),
		ctx:         contextKeys(c),
		f:           f,
		w:           w,
	}, nil
}

// openFile opens (creating) the events file and its folder, from root
// without following links when root is set. The folder nearly always
// exists (the jobrunner made it; the supervisor appends after it): it is
// made only when the first open finds it missing, one walk from the root
// fewer.
func openFile(path, root string) (*os.File, error) {
	const flag = os.O_APPEND | os.O_CREATE | os.O_RDWR | syscall.O_NOFOLLOW
	open, mkdir := func() (*os.File, error) { return os.OpenFile(path, flag, 0o644) },
		func() error { return os.MkdirAll(filepath.Dir(path), 0o755) }
	if root != "" {
		rel, err := filepath.Rel(root, path)
		if err != nil || !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("eventlog: events file %q is not inside its root %q", path, root)
		}
		open, mkdir = func() (*os.File, error) { return safepath.Open(root, rel, flag, 0o644) },
			func() error { return safepath.MkdirAll(root, filepath.Dir(rel), 0o755) }
	}
	f, err := open()
	if errors.Is(err, fs.ErrNotExist) {
		if err := mkdir(); err != nil {
			return nil, fmt.Errorf("eventlog: create folder for events file: %w", err)
		}
		f, err = open()
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: open events file: %w", err)
	}
	return f, nil
}

// cutPartialLine truncates f after its last newline, dropping a line that
// a writer did not finish.
func cutPartialLine(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	end := st.Size()
	// Nearly always the file is new or ends on a whole line.
	var last [1]byte
	if end == 0 {
		return nil
	}
	if _, err := f.ReadAt(last[:], end-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	buf := make([]byte, 64<<10)
	for end > 0 {
		start := max(0, end-int64(len(buf)))
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil {
			return err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			end = start + int64(i) + 1
			break
		}
		end = start
	}
	if end == st.Size() {
		return nil
	}
	return f.Truncate(end)
}

// failed handles a failed write (a full disk, say): buffered lines are
// dropped and a line the file received in part is cut, so the file still
// ends on a complete line and later writes can go on when there is room.
// It returns the error to report. l.mu is held.
func (l *Log) failed(err error) error {
	if l.writeErr == nil {
		l.writeErr = err
	}
	l.w.Reset(l.f) // drops the buffered lines
	_ = cutPartialLine(l.f)
	return fmt.Errorf("eventlog: write events file: %w", err)
}

// WriteErr returns the first write that failed since Open, or nil, so a
// caller can say why events are missing (errors.Is(err, syscall.ENOSPC)).
func (l *Log) WriteErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writeErr
}

func contextKeys(c Context) []ctxKey {
	var keys []ctxKey
	for _, kv := range [...][2]string{
		{"jobId", c.JobID},
		{"workspaceId", c.WorkspaceID},
		{"buildId", c.BuildID},
		{"configurationId", c.ConfigurationID},
	} {
		if kv[1] == "" {
			continue
		}
		quoted := appendString(nil, []byte(kv[0]))
		value := appendString(nil, []byte(kv[1]))
		member := append(append(append([]byte{}, quoted...), ':'), value...)
		keys = append(keys, ctxKey{name: kv[0], quoted: quoted, value: value, member: member})
	}
	return keys
}

// Path returns the path of the events file.
func (l *Log) Path() string { return l.path }

// Emit appends a worker event with a full envelope and flushes it to the file.
// level "" means "info". data is not modified.
func (l *Log) Emit(level, event, message string, data map[string]any) error {
	return l.Append(Event{Level: level, Event: event, Message: message, Data: data})
}

// Append is Emit with the envelope's optional "error" member.
func (l *Log) Append(e Event) error {
	line, err := l.encodeEvent(e)
	if err != nil {
		return err
	}
	return l.writeLine(line, true)
}

func (l *Log) encodeEvent(e Event) ([]byte, error) {
	if e.Event == "" {
		return nil, errors.New("eventlog: event name is empty")
	}
	data := make(map[string]any, len(e.Data)+len(l.ctx))
	for k, v := range e.Data {
		data[k] = v
	}
	for _, c := range l.ctx {
		if _, ok := data[c.name]; !ok {
			data[c.name] = json.RawMessage(c.value)
		}
	}
	dataJSON, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("eventlog: encode data of event %s: %w", e.Event, err)
	}
	var errJSON []byte
	if e.Error != nil {
		if errJSON, err = json.Marshal(e.Error); err != nil {
			return nil, fmt.Errorf("eventlog: encode error of event %s: %w", e.Event, err)
		}
	}
	level := e.Level
	if level == "" {
		level = "info"
	}
	b := make([]byte, 0, 256+len(e.Message)+len(dataJSON)+len(errJSON))
	var id [16]byte
	_, _ = rand.Read(id[:]) // never fails
	b = appendHead(b, id, l.engineRunID, new(clock))
	b = append(b, `,"level":`...)
	b = appendString(b, []byte(level))
	b = append(b, `,"event":`...)
	b = appendString(b, []byte(e.Event))
	b = append(b, `,"message":`...)
	b = appendString(b, []byte(e.Message))
	b = append(b, `,"data":`...)
	b = append(b, dataJSON...)
	if errJSON != nil {
		b = append(b, `,"error":`...)
		b = append(b, errJSON...)
	}
	return append(b, '}', '\n'), nil
}

// appendHead appends `{"event_id":...,"engine_run_id":...,"timestamp":...`.
func appendHead(b []byte, id [16]byte, engineRunID []byte, clock *clock) []byte {
	b = append(b, `{"event_id":"`...)
	b = appendUUID(b, id)
	b = append(b, `","engine_run_id":`...)
	b = append(b, engineRunID...)
	b = append(b, `,"timestamp":"`...)
	b = clock.appendNow(b)
	return append(b, '"')
}

// writeLine writes one or more whole '\n'-terminated lines. The write buffer
// is flushed first when the lines do not fit in it, so the file only ever
// receives whole lines; lines larger than the buffer go straight to the file.
func (l *Log) writeLine(line []byte, flush bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.w.Available() < len(line) && l.w.Buffered() > 0 {
		if err := l.w.Flush(); err != nil {
			return l.failed(err)
		}
	}
	var err error
	if len(line) > l.w.Size() {
		_, err = l.f.Write(line)
	} else {
		_, err = l.w.Write(line)
	}
	if err == nil && flush {
		err = l.w.Flush()
	}
	if err != nil {
		return l.failed(err)
	}
	return nil
}

// Flush hands buffered lines to the operating system.
func (l *Log) Flush() error {
	return l.writeLine(nil, true)
}

// Close flushes buffered lines and closes the file. Calling it again does
// nothing and returns nil. Pipes still running see ErrClosed on their writes
// but keep draining their reader.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	ferr := l.w.Flush()
	if ferr != nil {
		ferr = l.failed(ferr)
	}
	cerr := l.f.Close()
	l.w.Reset(nil)
	writers.Put(l.w)
	l.w = nil // closed: no write reaches it again
	if ferr != nil {
		return ferr
	}
	if cerr != nil {
		return fmt.Errorf("eventlog: close events file: %w", cerr)
	}
	return nil
}
