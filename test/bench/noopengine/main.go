// Command noopengine stands in for a build's bin/python in benchmarks. It
// accepts the engine's command line (`-m ade_engine process file --input F
// --output-dir D ...`), ignores everything but --input, prints the minimal
// NDJSON events an engine prints on stderr (engine.run.started, then
// engine.run.completed with a small summary), writes no files and exits 0.
//
// Jobs get an allow-listed environment, so the mode comes from the input:
// when the first line of --input is "#firehose=N", it first prints N
// engine.debug.tick events of about 220 bytes each, as fast as it can.
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"time"
)

const summary = `{"scope":"run","status":"succeeded","schema_version":1,` +
	`"evaluation":{"outcome":"success","findings":[]},` +
	`"validation":{"issues_total":0,"issues_by_severity":{"info":0,"warning":0,"error":0},"max_severity":null},` +
	`"counts":{"workbooks":1,"sheets":1,"tables":1,"rows":{"total":1,"empty":0}}}`

func main() {
	input := ""
	args := os.Args[1:]
	for i := 0; i < len(args)-1; i++ {
		if args[i] == "--input" {
			input = args[i+1]
		}
	}
	e := &emitter{w: bufio.NewWriterSize(os.Stderr, 256<<10), runID: uuid()}
	e.event("engine.run.started", "Run started", `{}`)
	for i, n := 1, firehose(input); i <= n; i++ {
		e.tick(i, n)
	}
	e.event("engine.run.completed", "Run completed", summary)
	if err := e.w.Flush(); err != nil {
		os.Exit(1)
	}
}

// firehose reads the tick count from the input's first line, 0 for none.
func firehose(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	v, ok := strings.CutPrefix(strings.TrimSpace(line), "#firehose=")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(v)
	return n
}

type emitter struct {
	w     *bufio.Writer
	runID string
	buf   []byte
}

func (e *emitter) head(eventID, event string) {
	e.buf = append(e.buf[:0], `{"event_id":"`...)
	e.buf = append(e.buf, eventID...)
	e.buf = append(e.buf, `","engine_run_id":"`...)
	e.buf = append(e.buf, e.runID...)
	e.buf = append(e.buf, `","timestamp":"`...)
	e.buf = time.Now().UTC().AppendFormat(e.buf, "2006-01-02T15:04:05.000000Z")
	e.buf = append(e.buf, `","level":"info","event":"`...)
	e.buf = append(e.buf, event...)
}

func (e *emitter) event(event, message, data string) {
	e.head(uuid(), event)
	e.buf = append(e.buf, `","message":"`...)
	e.buf = append(e.buf, message...)
	e.buf = append(e.buf, `","data":`...)
	e.buf = append(e.buf, data...)
	e.buf = append(e.buf, "}\n"...)
	_, _ = e.w.Write(e.buf)
}

// tick writes one firehose line; its event id is the run id with the
// sequence number in the last group, so it stays unique without entropy.
func (e *emitter) tick(seq, total int) {
	id := []byte(e.runID[:24] + "000000000000")
	s := strconv.Itoa(seq)
	copy(id[36-len(s):], s)
	e.head(string(id), "engine.debug.tick")
	e.buf = append(e.buf, `","message":"tick","data":{"seq":`...)
	e.buf = strconv.AppendInt(e.buf, int64(seq), 10)
	e.buf = append(e.buf, `,"total":`...)
	e.buf = strconv.AppendInt(e.buf, int64(total), 10)
	e.buf = append(e.buf, "}}\n"...)
	_, _ = e.w.Write(e.buf)
}

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
