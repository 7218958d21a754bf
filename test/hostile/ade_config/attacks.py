"""What a hostile workspace user's configuration code tries, in a run and in
a build, against the worker that runs it. Each attempt is recorded as
{"ok": true/false, "detail"/"error": ...}; the Go tests assert that every
attack failed and every legitimate action worked.

The targets (other tenants' files, the database, the supervisor's pid, ...)
come from targets.json beside the package, written by the test: a real
attacker would search for them, which the sandbox makes no easier."""

import ctypes
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time

PTRACE_ATTACH, PTRACE_DETACH, PR_GET_NO_NEW_PRIVS = 16, 17, 39


def attempt(fn, *args):
    try:
        return {"ok": True, "detail": str(fn(*args))[:300]}
    except BaseException as exc:  # noqa: BLE001  every outcome is data here
        return {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc), "errno": getattr(exc, "errno", None)}


def read(path):
    with open(path, "rb") as handle:
        return len(handle.read(4096))


def listdir(path):
    return len(os.listdir(path))


def append(path):
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\nprint('hostile code ran')\n")
    return path


def create_in(folder):
    path = os.path.join(folder, "hostile-was-here")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("x")
    return path


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=3)
    sock.close()
    return port


def bind_tcp():
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        return sock.getsockname()[1]
    finally:
        sock.close()


def connect_unix(path):
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.connect(path)
    finally:
        sock.close()
    return path


def udp_send(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.sendto(b"hostile", ("127.0.0.1", port))
    finally:
        sock.close()
    return port


def sysv_shared_memory():
    """A segment outlives the job and is open to every job of the uid."""
    libc = ctypes.CDLL(None, use_errno=True)
    shmid = libc.shmget(0, 1 << 20, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
    if shmid < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    libc.shmctl(shmid, 0, None)  # IPC_RMID: made is proof enough
    return shmid


def connect_abstract(name):
    connect_unix("\0" + name)
    return name


def send(pid, sig):
    os.kill(pid, sig)
    if sig == signal.SIGSTOP:  # it worked: do not leave the victim stopped
        os.kill(pid, signal.SIGCONT)
    return pid


def ptrace(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    libc.ptrace(PTRACE_DETACH, pid, None, None)
    return pid


def no_new_privs():
    libc = ctypes.CDLL(None, use_errno=True)
    value = libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
    if value != 1:
        raise RuntimeError("no_new_privs is %d: a setuid program would gain privileges" % value)
    return value


def write_shm():
    path = "/dev/shm/ade-hostile-%d" % os.getpid()
    with open(path, "wb") as handle:
        handle.write(b"\0" * (1 << 20))
    os.unlink(path)  # written is proof enough; left, it holds a MB of RAM
    return path


def write_tmpdir():
    fd, path = tempfile.mkstemp(prefix="ade-hostile-")
    os.write(fd, b"scratch")
    os.close(fd)
    return path


def load_targets(package_root):
    try:
        with open(os.path.join(package_root, "targets.json"), encoding="utf-8") as handle:
            return json.load(handle)
    except OSError:
        return None


def common_attacks(t):
    sup = t["supervisor_pid"]
    out = {
        "read_database": attempt(read, t["database"]) if t.get("database") else None,
        "read_supervisor_environ": attempt(read, "/proc/%d/environ" % sup),
        "read_supervisor_mem": attempt(read, "/proc/%d/mem" % sup),
        "list_supervisor_cwd": attempt(listdir, "/proc/%d/cwd" % sup),
        "list_proc": attempt(listdir, "/proc"),
        "connect_database_port": attempt(connect, t["database_port"]),
        "bind_tcp": attempt(bind_tcp),
        "connect_abstract_socket": attempt(connect_abstract, t["abstract_socket"]),
        # By path, like a local PostgreSQL's socket (Landlock before ABI 9
        # does not govern it; the worker's seccomp filter does).
        "connect_unix_socket": attempt(connect_unix, t["unix_socket"]),
        "sysv_shared_memory": attempt(sysv_shared_memory),
        "read_other_document": attempt(read, t["other_document"]),
        "read_other_output": attempt(read, t["other_output"]),
        "write_other_run": attempt(create_in, t["other_run_dir"]),
        "append_other_venv": attempt(append, t["other_venv_file"]),
        "read_secret": attempt(read, t["secret_file"]),
        "signal_other_engine": attempt(send, t["other_engine_pid"], signal.SIGKILL),
        "stop_supervisor": attempt(send, sup, signal.SIGSTOP),
        "ptrace_supervisor": attempt(ptrace, sup),
        "write_dev_shm": attempt(write_shm),
    }
    return {k: v for k, v in out.items() if v is not None}


def write_report(path, report):
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def plant_venv_home(targets):
    """Writes "home" lines into the pyvenv.cfg of the venv being built, each
    naming a folder whose parent holds another tenant's document or the
    secret, before the real line (Python keeps the last). A worker that
    derived the runs' read rights from this file would hand them those
    folders."""
    cfg = os.path.join(sys.prefix, "pyvenv.cfg")
    with open(cfg, encoding="utf-8") as handle:
        original = handle.read()
    lures = "".join("home = %s\n" % os.path.join(os.path.dirname(targets[key]), "bin")
                    for key in ("secret_file", "other_document"))
    with open(cfg, "w", encoding="utf-8") as handle:
        handle.write(lures + original)
    return cfg


def build_attacks(package_root, report_path):
    """The package's install code, run by pip during a build."""
    t = load_targets(package_root)
    if t is None:
        return
    attacks = common_attacks(t)
    # pip's cache outside this workspace's own folder: a wheel planted there
    # would be installed by another tenant's build.
    attacks["write_shared_pip_cache"] = attempt(create_in, t["pip_cache_root"])
    # Allowed (a build writes its own venv); what it must not win is read
    # rights for the build's runs, which the run's attacks then test.
    planted = attempt(plant_venv_home, t)
    legit = {
        "read_package": attempt(read, os.path.join(package_root, "pyproject.toml")),
        # Allowed by the sandbox during builds (a package index's port):
        # nothing listens there, so "connection refused", never "permission".
        "connect_index_port": attempt(connect, t["index_port"]),
        "write_tmpdir": attempt(write_tmpdir),
        "no_new_privs": attempt(no_new_privs),
    }
    write_report(report_path, {"attacks": attacks, "legit": legit, "planted": {"venv_home": planted},
                               "tmpdir": os.environ.get("TMPDIR", "")})


def argument(name):
    argv = sys.argv
    for i, arg in enumerate(argv[:-1]):
        if arg == name:
            return argv[i + 1]
    return None


def directives(input_path):
    """#ade-hostile: key=value lines at the top of the input."""
    found = {}
    try:
        with open(input_path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("#ade-hostile:"):
                    key, _, value = line.split(":", 1)[1].strip().partition("=")
                    found[key] = value
    except OSError:
        pass
    return found


def leak(found, output_dir):
    """The leaks of issue 4: threads past the process limit, memory spread
    over children past the memory limit, a daemon outliving its job."""
    if "threads" in found:
        stop = threading.Event()
        threading.stack_size(256 << 10)  # small stacks fit under an address-space limit
        for _ in range(int(found["threads"])):
            try:
                threading.Thread(target=stop.wait, daemon=True).start()
            except RuntimeError:  # out of address space: hold what it has
                break
        time.sleep(float(found.get("hold", "10")))
    if "children-mb" in found:
        mib = int(found["children-mb"])
        for _ in range(int(found.get("children", "3"))):
            if os.fork() == 0:
                block = bytearray(mib << 20)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(float(found.get("hold", "10")))
                os._exit(0)
        time.sleep(float(found.get("hold", "10")))
    if "daemon" in found:
        read_end, write_end = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.write(write_end, b"%d" % os.getpid())
                time.sleep(600)
                os._exit(0)
            os._exit(0)
        os.close(write_end)
        pid = os.read(read_end, 32).decode()
        with open(os.path.join(output_dir, "daemon.pid"), "w", encoding="utf-8") as handle:
            handle.write(pid)
        time.sleep(float(found.get("hold", "30")))


def run_attacks(package_root):
    """The package's code, imported by the engine during a run."""
    output_dir, input_path = argument("--output-dir"), argument("--input")
    if not output_dir or not input_path:
        return  # imported by a build's check, not by a run
    found = directives(input_path)
    if found:
        leak(found, output_dir)
        return
    t = load_targets(package_root)
    if t is None:
        return
    attacks = common_attacks(t)
    engine = sys.modules.get("ade_engine")
    if engine is not None:
        attacks["append_own_venv"] = attempt(append, engine.__file__)
    # A link in the output would lead whoever serves the output (the ADE
    # API) to another tenant's document.
    attacks["symlink_in_output"] = attempt(os.symlink, t["other_document"], os.path.join(output_dir, "leak.csv"))
    # UDP reaches whatever listens on the host (a run has no network).
    attacks["send_udp"] = attempt(udp_send, t["database_port"])
    # A named pipe would hang whoever opens it to read.
    attacks["fifo_in_output"] = attempt(os.mkfifo, os.path.join(output_dir, "hang.csv"))
    # The engine's parent is its jobrunner, outside the job's sandbox.
    attacks["signal_jobrunner"] = attempt(send, os.getppid(), signal.SIGCONT)
    legit = {
        "read_input": attempt(read, input_path),
        "write_output": attempt(create_in, output_dir),
        "write_tmpdir": attempt(write_tmpdir),
        "import_venv": attempt(lambda: engine.__version__),
        "no_new_privs": attempt(no_new_privs),
    }
    write_report(os.path.join(output_dir, "hostile-report.json"),
                 {"attacks": attacks, "legit": legit, "tmpdir": os.environ.get("TMPDIR", "")})
