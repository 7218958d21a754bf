"""``#ade-test:`` directives: let a test choose the engine's behaviour.

Leading lines of the input file of the form ``#ade-test: key=value`` (or a
bare ``#ade-test: key``) are removed before the CSV is parsed and run in
file order once ``engine.run.started`` has been emitted. Several
whitespace-separated directives may share a line. See README.md.
"""

import json
import os
import sys
import time

# subprocess, random and signal are imported where used: most runs never
# need them, and their imports cost start-up time on every run.

PREFIX = "#ade-test:"


class Directive:
    def __init__(self, key, value, line):
        self.key = key
        self.value = value
        self.line = line

    def as_dict(self):
        return {"key": self.key, "value": self.value, "line": self.line}


def split_directives(text):
    """Return (directives, remaining_text) for the decoded input ``text``."""
    directives = []
    lines = text.splitlines(keepends=True)
    consumed = 0
    for number, line in enumerate(lines, start=1):
        if not line.startswith(PREFIX):
            break
        consumed += 1
        for token in line[len(PREFIX):].split():
            key, sep, value = token.partition("=")
            directives.append(Directive(key.strip().lower(), value.strip() if sep else None, number))
    return directives, "".join(lines[consumed:])


def _burn_until(deadline, step):
    """Spin until the process has used ``deadline`` seconds of CPU in all,
    looking at the clock every ``step`` iterations."""
    counter = 0
    while time.process_time() < deadline:
        for _ in range(step):
            counter += 1


class DirectiveRunner:
    """Runs directives; ``run`` returns an exit code when the engine must stop."""

    def __init__(self, log, input_path, output_dir, input_ends_with_newline=True):
        self.log = log
        self.input_path = input_path
        self.output_dir = output_dir
        self.input_ends_with_newline = input_ends_with_newline
        self.handlers = {
            "exit": (int, self._exit),
            "sleep": (float, self._sleep),
            "spawn-sleeper": (float, self._spawn_sleeper),
            "noise": (int, self._noise),
            "crash": (None, self._crash),
            "segv": (None, self._segv),
            "cpu-ms": (int, self._cpu_ms),
            "cpu-total-ms": (int, self._cpu_total_ms),
            "dump-env": (None, self._dump_env),
            "record-parent": (None, self._record_parent),
            "firehose": (int, self._firehose),
            "write-input": (None, self._write_input),
            "hugeline": (float, self._hugeline),
            "hugeline-stderr": (float, self._hugeline_stderr),
            "garbage": (None, self._garbage),
            "alloc-mb": (int, self._alloc_mb),
            "spawn": (int, self._spawn),
            "write-mb": (int, self._write_mb),
            "fill-disk": (None, self._fill_disk),
            "open-files": (int, self._open_files),
            "daemon": (float, self._daemon),
            "ignore-sigterm": (None, self._ignore_sigterm),
        }

    def run(self, directives):
        if directives:
            self.log.emit(
                "engine.test.directives",
                "Test directives found in input",
                {"directives": [d.as_dict() for d in directives]},
            )
        for directive in directives:
            handler = self.handlers.get(directive.key)
            if handler is None:
                self.log.emit(
                    "engine.test.directive.unknown",
                    "Ignoring unknown test directive %r" % directive.key,
                    directive.as_dict(),
                    level="warning",
                )
                continue
            convert, action = handler
            if convert is None:
                code = action()
            else:
                try:
                    value = convert(directive.value)
                except (TypeError, ValueError):
                    self.log.emit(
                        "engine.test.directive.invalid",
                        "Ignoring test directive %r with bad value %r" % (directive.key, directive.value),
                        directive.as_dict(),
                        level="warning",
                    )
                    continue
                code = action(value)
            if code is not None:
                return code
        return None

    def _ensure_output_dir(self):
        os.makedirs(self.output_dir, exist_ok=True)

    # -- directives ---------------------------------------------------------

    def _exit(self, code):
        self.log.emit(
            "engine.run.failed",
            "Run failed: exit=%d requested by test directive" % code,
            {"status": "failed", "exit_code": code, "reason": "test_directive"},
            level="error",
            error={"type": "TestDirectiveExit", "message": "exit=%d" % code},
            always=True,
        )
        return code

    def _sleep(self, seconds):
        self.log.emit("engine.test.sleep", "Sleeping %gs" % seconds, {"seconds": seconds})
        time.sleep(max(0.0, seconds))

    def _ignore_sigterm(self):
        # A stubborn engine: only SIGKILL stops it. Children started later
        # inherit the ignored disposition too.
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.log.emit("engine.test.sigterm.ignored", "Ignoring SIGTERM", {})

    def _alloc_mb(self, mib):
        # Touch every page so the memory is really used.
        self.log.emit("engine.test.alloc", "Allocating %d MiB" % mib, {"mib": mib})
        block = bytearray(mib << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        self._kept = block

    def _spawn(self, count):
        # count sleeping children in our process group, left running.
        import subprocess

        self.log.emit("engine.test.spawn", "Starting %d children" % count, {"count": count})
        self._children = [
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], stdin=subprocess.DEVNULL)
            for _ in range(count)
        ]
        time.sleep(1)

    def _write_mb(self, mib):
        self._ensure_output_dir()
        path = os.path.join(self.output_dir, "big.bin")
        self.log.emit("engine.test.write", "Writing %d MiB to %s" % (mib, path), {"mib": mib})
        chunk = b"x" * (1 << 20)
        with open(path, "wb") as handle:
            for _ in range(mib):
                handle.write(chunk)

    def _fill_disk(self):
        # Write output/fill.bin until the disk is full, then, like an engine
        # that goes on logging, emit 64 events of about 1 KiB (so the events
        # file cannot take them either) and fail with the OSError.
        import errno

        self._ensure_output_dir()
        path = os.path.join(self.output_dir, "fill.bin")
        chunk = b"x" * (1 << 20)
        written = 0
        try:
            with open(path, "wb") as handle:
                while True:
                    handle.write(chunk)
                    handle.flush()
                    written += len(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            for i in range(64):
                self.log.emit("engine.test.disk.full", "Disk full after %d bytes" % written,
                              {"seq": i, "pad": "y" * 1000}, level="warning")
            raise

    def _open_files(self, count):
        self._ensure_output_dir()
        self.log.emit("engine.test.open", "Opening %d files" % count, {"count": count})
        self._files = [open(os.path.join(self.output_dir, "f%d" % i), "w") for i in range(count)]

    def _daemon(self, seconds):
        # A detached daemon: double fork, own session, output closed. Its pid
        # goes to output/daemon.pid; the engine then goes on and exits.
        self._ensure_output_dir()
        pid_file = os.path.join(self.output_dir, "daemon.pid")
        read_end, write_end = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.close(read_end)
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.write(write_end, b"%d" % os.getpid())
                os.close(write_end)
                time.sleep(seconds)
                os._exit(0)
            os._exit(0)
        os.close(write_end)
        pid = int(os.read(read_end, 32) or b"0")
        os.close(read_end)
        with open(pid_file, "w", encoding="utf-8") as handle:
            handle.write("%d\n" % pid)
        self.log.emit("engine.test.daemon", "Detached daemon %d" % pid, {"pid": pid, "seconds": seconds})

    def _spawn_sleeper(self, seconds):
        # Same process group and inherited stdout/stderr, like a real child.
        import subprocess

        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(%r)" % seconds],
            stdin=subprocess.DEVNULL,
        )
        self._ensure_output_dir()
        pid_file = os.path.join(self.output_dir, "sleeper.pid")
        with open(pid_file, "w", encoding="utf-8") as handle:
            handle.write("%d\n" % child.pid)
        self.log.emit(
            "engine.test.sleeper.spawned",
            "Spawned sleeper child %d" % child.pid,
            {"pid": child.pid, "seconds": seconds, "pid_file": os.path.abspath(pid_file)},
        )

    def _noise(self, count):
        stdout = sys.stdout.buffer
        for i in range(1, count + 1):
            stdout.write(("plain stdout line %d\n" % i).encode("utf-8"))
            stdout.flush()
            self.log.write_line("plain stderr line %d" % i)
            self.log.emit("engine.test.noise", "Noise %d of %d" % (i, count), {"line": i, "total": count})

    def _crash(self):
        self.log.emit("engine.test.crash", "Killing self with SIGKILL", {"pid": os.getpid()}, level="warning")
        self.log.flush()
        os.kill(os.getpid(), 9)  # SIGKILL
        time.sleep(10)  # not reached

    def _segv(self):
        self.log.emit("engine.test.segv", "Killing self with SIGSEGV", {"pid": os.getpid()}, level="warning")
        self.log.flush()
        import signal

        signal.signal(signal.SIGSEGV, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(10)  # not reached

    def _cpu_ms(self, millis):
        start = time.process_time()
        _burn_until(start + max(0, millis) / 1000.0, 10000)
        used = (time.process_time() - start) * 1000.0
        self.log.emit(
            "engine.test.cpu",
            "Burned %.0f ms of CPU" % used,
            {"requested_ms": millis, "cpu_ms": round(used, 3)},
        )

    def _cpu_total_ms(self, millis):
        # Tops the process's CPU (start-up included) up to millis: an engine
        # run that costs a known total, whatever the interpreter's start-up.
        before = time.process_time()
        _burn_until(max(0, millis) / 1000.0, 1000)
        total = time.process_time() * 1000.0
        self.log.emit(
            "engine.test.cpu",
            "Process CPU now %.0f ms" % total,
            {"requested_total_ms": millis, "cpu_ms": round(total - before * 1000.0, 3), "total_cpu_ms": round(total, 3)},
        )

    def _dump_env(self):
        self._ensure_output_dir()
        path = os.path.join(self.output_dir, "env.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(dict(os.environ), handle, indent=2, sort_keys=True)
            handle.write("\n")
        self.log.emit("engine.test.env.dumped", "Wrote environment", {"path": os.path.abspath(path)})

    def _record_parent(self):
        self._ensure_output_dir()
        path = os.path.join(self.output_dir, "parent.pid")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("%d\n" % os.getppid())
        self.log.emit("engine.test.parent.recorded", "Wrote the parent's pid", {"pid": os.getppid()})

    def _firehose(self, count):
        for i in range(count):
            self.log.emit("engine.debug.tick", "tick %d" % i, {"seq": i, "total": count}, flush=False)
        self.log.flush()

    def _write_input(self):
        line = "ade-test-engine: write-input directive appended this line\n"
        if not self.input_ends_with_newline:
            line = "\n" + line
        with open(self.input_path, "a", encoding="utf-8") as handle:
            handle.write(line)
        self.log.emit("engine.test.input.written", "Appended a line to the input file", {"path": os.path.abspath(self.input_path)})

    def _huge_text(self, mib):
        # Looks like the start of an engine event but never ends; mixes
        # multi-byte UTF-8 ("é" is 2 bytes) so a cut must respect boundaries.
        size = max(0, int(mib * (1 << 20)))
        head = b'{"event": "engine.test.fake", "message": "'
        body = ("x\u00e9" * (size // 3 + 1)).encode("utf-8")
        return (head + body)[:size]

    def _hugeline(self, mib):
        text = self._huge_text(mib)
        self.log.flush()
        stdout = sys.stdout.buffer
        stdout.write(text)  # no newline: the line ends when stdout closes
        stdout.flush()
        self.log.emit("engine.test.hugeline", "Wrote %d bytes on stdout without a newline" % len(text),
                      {"bytes": len(text), "stream": "stdout"})

    def _hugeline_stderr(self, mib):
        text = self._huge_text(mib)
        self.log.flush()
        self.log.stream.write(text + b"\n")
        self.log.flush()
        self.log.emit("engine.test.hugeline", "Wrote a %d-byte line on stderr" % len(text),
                      {"bytes": len(text), "stream": "stderr"})

    def _garbage(self):
        import random

        rnd = random.Random(4)
        noise = bytes(range(256)) + bytes(rnd.getrandbits(8) for _ in range(8192))
        out = b"\x00\x01garbage on stdout \xff\xfe\xc3\x28 bad utf-8 \xed\xa0\x80 surrogate\n" + noise + b"\n"
        err = b"\x00garbage on stderr \xc0\xaf overlong \xf8\x88\x80\x80\x80\n" + noise + b"\n"
        bad_event = (b'{"event": "engine.test.garbage.json", "message": "bad \xff\xfe utf-8 \x00 in an event", '
                     b'"data": {"raw": "\xc3\x28"}}\n')
        self.log.flush()
        stdout = sys.stdout.buffer
        stdout.write(out)
        stdout.flush()
        self.log.stream.write(err + bad_event)
        self.log.flush()
        self.log.emit("engine.test.garbage", "Wrote binary garbage on stdout and stderr",
                      {"stdout_bytes": len(out), "stderr_bytes": len(err) + len(bad_event)})
