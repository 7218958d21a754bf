"""Engine events: one JSON object per line on stderr (or readable text)."""

import json
import os
import sys
import time

# uuid and datetime are not imported: together they cost the engine a few
# milliseconds of start-up per run, which benchmarks of the worker feel.

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
LEVEL_ALIASES = {"warn": "warning", "critical": "error", "fatal": "error"}


def parse_level(name):
    """Return the canonical level for ``name`` (case-insensitive)."""
    level = str(name).strip().lower()
    level = LEVEL_ALIASES.get(level, level)
    if level not in LEVELS:
        raise ValueError("unknown log level %r (use debug, info, warning or error)" % name)
    return level


def utc_timestamp():
    """RFC 3339 UTC timestamp with microseconds, e.g. 2026-01-01T00:00:00.123456Z."""
    now = time.time_ns() // 1000
    seconds, micros = divmod(now, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%06dZ" % micros


def uuid4():
    """A random (version 4) UUID string, as uuid.uuid4() makes."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


class EventLogger:
    """Writes engine events to stderr.

    Every event is written through the binary stderr buffer and flushed
    immediately unless ``flush=False`` (used by the firehose directive), so
    what was emitted before a crash is on the pipe. Events below the
    configured level are dropped unless ``always=True`` (run lifecycle
    events the worker depends on).
    """

    def __init__(self, log_format="ndjson", level="info", stream=None):
        self.log_format = log_format
        self.threshold = LEVELS[parse_level(level)]
        self.engine_run_id = uuid4()
        self.stream = stream if stream is not None else sys.stderr.buffer

    def enabled(self, level):
        return LEVELS[level] >= self.threshold

    def emit(self, event, message, data=None, level="info", error=None, flush=True, always=False):
        if not always and not self.enabled(level):
            return
        record = {
            "event_id": uuid4(),
            "engine_run_id": self.engine_run_id,
            "timestamp": utc_timestamp(),
            "level": level,
            "event": event,
            "message": message,
            "data": data if data is not None else {},
        }
        if error is not None:
            record["error"] = error
        if self.log_format == "ndjson":
            line = json.dumps(record, ensure_ascii=False)
        else:
            line = "%s %-7s %s: %s" % (record["timestamp"], level.upper(), event, message)
            if record["data"]:
                line += " " + json.dumps(record["data"], ensure_ascii=False, sort_keys=True)
        self.write_line(line, flush=flush)

    def write_line(self, text, flush=True):
        """Write one raw line to the event stream (used for plain noise lines)."""
        self.stream.write(text.encode("utf-8", "replace") + b"\n")
        if flush:
            self.stream.flush()

    def flush(self):
        self.stream.flush()
