#!/usr/bin/env bash
# What CI runs instead of `docker build` (no Docker engine there): the steps of
# the Dockerfile's stages, outside Docker, plus static checks of the Dockerfile,
# .dockerignore and docker-compose.yml.
#
#   1. copy the build context as .dockerignore filters it (Docker sees no more)
#      and check every COPY source of the Dockerfile is in it
#   2. static Dockerfile checks: the stages run scripts/build-binaries.sh and
#      scripts/image-runtime-setup.sh, Go version matches go.mod, same Debian
#      release in both stages, binaries in /usr/local/bin, ENV defaults under
#      /data, non-root USER, VOLUME /data, ENTRYPOINT supervisor, no CMD
#   3. build stage: scripts/build-binaries.sh in that context copy, then
#      `supervisor version`, `jobrunner --help`, and `supervisor migrate` plus
#      `supervisor --exit-when-idle` on SQLite with the image's /data layout
#   4. runtime stage: scripts/image-runtime-setup.sh --check
#   5. docker-compose.yml consistency (parsed by `docker compose config` when the
#      compose plugin works, else PyYAML, else a small stdlib YAML subset parser)
#   6. hadolint, if installed
# Exits non-zero on the first failure; the last line is a one-line summary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$PATH:/usr/local/go/bin"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
say() { echo "docker-build: $*"; }
fail() { echo "docker-build: FAILED: $*" >&2; exit 1; }

for tool in go gcc python3; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done

# ---------------------------------------------------------------- checker ----
cat >"$WORK/check.py" <<'PY'
"""Static checks for scripts/docker-build.sh (Python 3 stdlib only)."""
import json, os, re, shutil, sys

ROOT = os.getcwd()
errors = []


def err(msg):
    errors.append(msg)


def finish(what):
    if errors:
        for e in errors:
            print("docker-build: %s: %s" % (what, e), file=sys.stderr)
        sys.exit(1)


# ------------------------------------------------------------ .dockerignore --
def ignore_rules():
    rules = []
    path = os.path.join(ROOT, ".dockerignore")
    if not os.path.exists(path):
        return rules
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
        rx, i = "", 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif pat.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pat[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pat[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(pat[i]), i + 1
        rules.append((neg, re.compile(rx + r"\Z")))
    return rules


def ignored(rel, rules):
    # Like Docker: the last matching rule wins; a rule matching a parent
    # directory matches everything under it.
    parts = rel.split("/")
    cands = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    out = False
    for neg, rx in rules:
        if any(rx.match(c) for c in cands):
            out = not neg
    return out


def copy_context(dst):
    rules = ignore_rules()
    n = 0
    for d, dirs, files in os.walk(ROOT):
        reld = os.path.relpath(d, ROOT)
        reld = "" if reld == "." else reld + "/"
        dirs[:] = [x for x in dirs if not ignored(reld + x, rules)
                   or any(neg for neg, _ in rules)]
        for f in files:
            rel = reld + f
            if ignored(rel, rules):
                continue
            os.makedirs(os.path.join(dst, reld), exist_ok=True)
            shutil.copy2(os.path.join(d, f), os.path.join(dst, rel))
            n += 1
    return n


# --------------------------------------------------------------- Dockerfile --
def dockerfile_instructions():
    out, cur = [], ""
    for line in open(os.path.join(ROOT, "Dockerfile")):
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        word, _, rest = cur.partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def check_dockerfile(ctx):
    ins = dockerfile_instructions()
    gomod = open(os.path.join(ROOT, "go.mod")).read()
    m = re.search(r"^go (\d+)\.(\d+)", gomod, re.M)
    want_go = "%s.%s" % m.groups() if m else None

    stages = []  # [(from_args, [(instr, args)])]
    for word, rest in ins:
        if word == "FROM":
            stages.append((rest, []))
        elif stages:
            stages[-1][1].append((word, rest))
    if len(stages) < 2:
        err("want a multi-stage build (a Go stage, then a runtime stage)")
        return
    build_from, build = stages[0]
    run_from, runtime = stages[-1]

    m = re.match(r"golang:(\d+\.\d+)[^\s]*\s+AS\s+(\S+)", build_from, re.I)
    if not m:
        err("first stage is not `FROM golang:X.Y-... AS name`: %s" % build_from)
        return
    if want_go and m.group(1) != want_go:
        err("build stage uses Go %s but go.mod says go %s" % (m.group(1), want_go))
    build_name = m.group(2)
    rel = lambda s: (re.findall(r"(bookworm|bullseye|trixie|buster)", s) or ["?"])[0]
    if rel(build_from) != rel(run_from):
        err("build (%s) and runtime (%s) stages are different Debian releases: "
            "the cgo binaries need the same glibc" % (rel(build_from), rel(run_from)))

    def runs(stage, script):
        return [a for w, a in stage if w == "RUN" and script in a]

    if not runs(build, "scripts/build-binaries.sh /out"):
        err("build stage does not RUN scripts/build-binaries.sh /out")
    setup = runs(runtime, "image-runtime-setup.sh")
    if not setup:
        err("runtime stage does not RUN image-runtime-setup.sh")
    elif any("--check" in a for a in setup):
        err("runtime stage runs image-runtime-setup.sh --check instead of the setup")
    if not any(w == "COPY" and "scripts/image-runtime-setup.sh" in a for w, a in runtime):
        err("runtime stage does not COPY scripts/image-runtime-setup.sh")

    bins = [a for w, a in runtime if w == "COPY" and "--from=" + build_name in a]
    for b in ("supervisor", "jobrunner"):
        if not any("/out/" + b in a and a.split()[-1].rstrip("/") == "/usr/local/bin"
                   for a in bins):
            err("runtime stage does not COPY --from=%s /out/%s to /usr/local/bin/"
                % (build_name, b))

    env = {}
    for w, a in runtime:
        if w == "ENV":
            for k, v in re.findall(r"(\w+)=(\S+)", a):
                env[k] = v
    want_env = {
        "ADE_DATABASE_URL": "sqlite:////data/db/ade.sqlite",
        "ADE_WORKSPACES_DIR": "/data/workspaces",
        "ADE_VENVS_DIR": "/data/venvs",
        "ADE_PIP_CACHE_DIR": "/data/cache/pip",
    }
    for k, v in want_env.items():
        if env.get(k) != v:
            err("runtime ENV %s=%s, want %s" % (k, env.get(k), v))

    users = [a for w, a in runtime if w == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        err("runtime stage does not switch to a non-root USER")
    elif users[-1].split(":")[0] not in ("10001", "ade"):
        err("runtime USER is %s, want 10001 (ade)" % users[-1])

    words = [w for w, _ in runtime]
    vols = [a for w, a in runtime if w == "VOLUME"]
    if not any("/data" in re.findall(r"[\w/.-]+", v) for v in vols):
        err("runtime stage has no VOLUME /data")
    elif setup and words.index("VOLUME") < max(
            i for i, (w, a) in enumerate(runtime) if w == "RUN" and "image-runtime-setup.sh" in a):
        err("VOLUME /data comes before the setup RUN (its changes would be discarded)")

    ep = [a for w, a in runtime if w == "ENTRYPOINT"]
    try:
        ep = json.loads(ep[-1]) if ep else []
    except ValueError:
        err("ENTRYPOINT is not exec form (JSON array): signals would not reach supervisor")
        ep = []
    if not ep or os.path.basename(ep[-1]) != "supervisor":
        err("ENTRYPOINT does not end in supervisor: %s" % ep)
    if "CMD" in words:
        err("runtime stage has a CMD; supervisor needs no arguments")

    # Every COPY from the context must survive .dockerignore.
    for stage in (build, runtime):
        for w, a in stage:
            if w not in ("COPY", "ADD") or "--from=" in a:
                continue
            args = [x for x in a.split() if not x.startswith("--")]
            for src in args[:-1]:
                if src != "." and not os.path.exists(os.path.join(ctx, src)):
                    err("COPY %s: not in the build context (.dockerignore?)" % src)
    for need in ("go.mod", "go.sum", "cmd/supervisor", "cmd/jobrunner", "pkg",
                 "scripts/build-binaries.sh"):
        if not os.path.exists(os.path.join(ctx, need)):
            err("%s is missing from the build context (.dockerignore?)" % need)
    finish("Dockerfile")


# ------------------------------------------------- minimal YAML (fallback) --
class MiniYAML:
    """Block mappings and sequences, flow lists/maps of scalars, quoted and
    plain scalars, anchors, aliases and `<<` merges: what compose files use."""

    BOOLS = {"true": True, "yes": True, "on": True,
             "false": False, "no": False, "off": False}

    def __init__(self, text):
        self.anchors = {}
        self.lines = []
        for raw in text.splitlines():
            s = self.strip_comment(raw).rstrip()
            if s.strip() and s.strip() != "---":
                if "\t" in s[: len(s) - len(s.lstrip())]:
                    raise ValueError("tab indentation: %r" % raw)
                self.lines.append([len(s) - len(s.lstrip()), s.strip()])

    @staticmethod
    def strip_comment(s):
        q = None
        for i, c in enumerate(s):
            if q:
                if c == q:
                    q = None
            elif c in "'\"":
                q = c
            elif c == "#" and (i == 0 or s[i - 1] in " \t"):
                return s[:i]
        return s

    @staticmethod
    def split_key(s):
        """'key: rest' -> (key, rest); None if s is not a mapping entry."""
        q = None
        for i, c in enumerate(s):
            if q:
                if c == q:
                    q = None
            elif c in "'\"" and i == 0:
                q = c
            elif c == ":" and (i + 1 == len(s) or s[i + 1] == " "):
                return s[:i].strip().strip("'\""), s[i + 1:].strip()
            elif c in "[{" and i == 0:
                return None
        return None

    def parse(self):
        if not self.lines:
            return None
        v, i = self.block(0, self.lines[0][0])
        if i != len(self.lines):
            raise ValueError("unexpected indentation at %r" % self.lines[i][1])
        return v

    def is_item(self, i):
        t = self.lines[i][1]
        return t == "-" or t.startswith("- ")

    def block(self, i, ind):
        return self.seq(i, ind) if self.is_item(i) else self.mapping(i, ind)

    def value(self, rest, i, ind, in_map):
        anchor = None
        if rest.startswith("&"):
            anchor, _, rest = rest.partition(" ")
            anchor, rest = anchor[1:], rest.strip()
        if rest:
            v = self.scalar(rest)
        elif i < len(self.lines) and self.lines[i][0] > ind:
            v, i = self.block(i, self.lines[i][0])
        elif in_map and i < len(self.lines) and self.lines[i][0] == ind and self.is_item(i):
            v, i = self.seq(i, ind)
        else:
            v = None
        if anchor:
            self.anchors[anchor] = v
        return v, i

    def mapping(self, i, ind):
        out, merged = {}, {}
        while i < len(self.lines) and self.lines[i][0] == ind and not self.is_item(i):
            kv = self.split_key(self.lines[i][1])
            if kv is None:
                raise ValueError("expected `key: value`: %r" % self.lines[i][1])
            k, rest = kv
            v, i = self.value(rest, i + 1, ind, True)
            if k == "<<":
                for m in v if isinstance(v, list) else [v]:
                    if not isinstance(m, dict):
                        raise ValueError("<< merges a non-mapping")
                    for mk, mv in m.items():
                        merged.setdefault(mk, mv)
            else:
                if k in out:
                    raise ValueError("duplicate key %r" % k)
                out[k] = v
        merged.update(out)
        return merged, i

    def seq(self, i, ind):
        out = []
        while i < len(self.lines) and self.lines[i][0] == ind and self.is_item(i):
            rest = self.lines[i][1][1:].strip()
            if rest and self.split_key(rest) is not None and not rest.startswith(("*", "&")):
                # "- key: v" starts a mapping indented at the key
                self.lines[i] = [ind + len(self.lines[i][1]) - len(rest), rest]
                v, i = self.mapping(i, self.lines[i][0])
            else:
                v, i = self.value(rest, i + 1, ind, False)
            out.append(v)
        return out, i

    def scalar(self, s):
        if s.startswith("*"):
            if s[1:] not in self.anchors:
                raise ValueError("unknown alias %s" % s)
            return self.anchors[s[1:]]
        if s.startswith("[") or s.startswith("{"):
            return self.flow(s)
        if s.startswith('"'):
            return json.loads(s)
        if s.startswith("'"):
            return s[1:-1].replace("''", "'")
        if s.lower() in self.BOOLS:
            return self.BOOLS[s.lower()]
        if s in ("~", "null", "Null", "NULL"):
            return None
        if re.fullmatch(r"[-+]?\d+", s):
            return int(s)
        if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?", s):
            return float(s)
        return s

    def flow(self, s):
        close = {"[": "]", "{": "}"}[s[0]]
        if not s.endswith(close):
            raise ValueError("multi-line flow collections are not supported: %r" % s)
        items, cur, q, depth = [], "", None, 0
        for c in s[1:-1]:
            if q:
                q = None if c == q else q
            elif c in "'\"":
                q = c
            elif c in "[{":
                depth += 1
            elif c in "]}":
                depth -= 1
            elif c == "," and depth == 0:
                items.append(cur.strip())
                cur = ""
                continue
            cur += c
        if cur.strip():
            items.append(cur.strip())
        if close == "]":
            return [self.scalar(x) for x in items]
        out = {}
        for x in items:
            k, _, v = x.partition(":")
            out[k.strip().strip("'\"")] = self.scalar(v.strip()) if v.strip() else None
        return out


def interpolate(v):
    """Compose variable substitution for the non-docker parsers."""
    if isinstance(v, dict):
        return {k: interpolate(x) for k, x in v.items()}
    if isinstance(v, list):
        return [interpolate(x) for x in v]
    if not isinstance(v, str):
        return v

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name, op, default = m.group(1) or m.group(4), m.group(2), m.group(3)
        val = os.environ.get(name)
        if op in (":-", ":?") and not val or op in ("-", "?") and val is None:
            if op.endswith("?"):
                raise ValueError("required variable %s is unset" % name)
            return default or ""
        return val or ""

    return re.sub(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)", sub, v)


def load_compose(path, parser):
    if parser == "json":  # output of `docker compose config --format json`
        return json.load(open(path)), "docker compose config"
    text = open(path).read()
    if parser != "mini":
        try:
            import yaml  # noqa: F401
            return interpolate(yaml.safe_load(text)), "PyYAML"
        except ImportError:
            pass
    return interpolate(MiniYAML(text).parse()), "stdlib YAML subset"


# ------------------------------------------------------------------ compose --
def duration(v):
    if isinstance(v, (int, float)):
        return float(v)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", str(v))
    if not parts or "".join(a + b for a, b in parts) != str(v).strip():
        raise ValueError("bad duration %r" % v)
    return sum(float(a) * units[b] for a, b in parts)


def env_of(svc):
    e = svc.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) if "=" in x else (x, None) for x in e)
    return {k: (None if v is None else str(v)) for k, v in e.items()}


def depends(svc):
    d = svc.get("depends_on") or {}
    if isinstance(d, list):
        return {k: "service_started" for k in d}
    return {k: (v or {}).get("condition", "service_started") for k, v in d.items()}


def mounts(svc, compose_dir):
    out = {}
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            out[v.get("target")] = (v.get("type", "volume"), v.get("source"))
        else:
            parts = str(v).split(":")
            src, tgt = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
            kind = "bind" if src and (src.startswith((".", "/", "~"))) else "volume"
            out[tgt] = (kind, src)
    return out


def build_of(svc, compose_dir):
    b = svc.get("build")
    if b is None:
        return None
    if isinstance(b, str):
        b = {"context": b}
    ctx = os.path.normpath(os.path.join(compose_dir, b.get("context", ".")))
    return ctx, b.get("dockerfile", "Dockerfile")


def check_compose(doc, compose_dir):
    services = doc.get("services") or {}
    for name in ("postgres", "migrate", "supervisor"):
        if name not in services:
            err("no %s service" % name)
    finish("docker-compose.yml")
    pg, mig, sup = services["postgres"], services["migrate"], services["supervisor"]
    ade = {n: s for n, s in services.items() if n != "postgres"}

    # One image, one build, for every ade-worker service.
    images = {n: s.get("image") for n, s in ade.items()}
    builds = {n: build_of(s, compose_dir) for n, s in ade.items()}
    if len(set(images.values())) != 1 or None in images.values():
        err("services use different images: %s" % images)
    if len(set(builds.values())) != 1 or None in builds.values():
        err("services use different builds: %s" % builds)
    else:
        ctx, dockerfile = next(iter(builds.values()))
        if os.path.realpath(ctx) != os.path.realpath(ROOT):
            err("build context %s is not the repository root" % ctx)
        if not os.path.exists(os.path.join(ctx, dockerfile)):
            err("build dockerfile %s does not exist" % dockerfile)

    # Database: every ade service talks to this postgres service.
    penv = env_of(pg)
    if "pg_isready" not in json.dumps((pg.get("healthcheck") or {}).get("test")):
        err("postgres has no pg_isready healthcheck")
    if not str(pg.get("image", "")).startswith("postgres:16"):
        err("postgres image is %s, want postgres:16" % pg.get("image"))
    if not any(t == "/var/lib/postgresql/data" and k == "volume"
               for t, (k, _) in mounts(pg, compose_dir).items()):
        err("postgres data is not on a named volume")
    want_url = "postgresql://%s:%s@postgres:5432/%s" % (
        penv.get("POSTGRES_USER"), penv.get("POSTGRES_PASSWORD"), penv.get("POSTGRES_DB"))
    for n, s in ade.items():
        url = env_of(s).get("ADE_DATABASE_URL")
        if url != want_url:
            err("%s: ADE_DATABASE_URL=%s, want %s" % (n, url, want_url))

    # migrate: one-shot, after postgres is healthy.
    cmd = mig.get("command")
    if (cmd.split() if isinstance(cmd, str) else cmd) != ["migrate"]:
        err("migrate: command is %r, want [\"migrate\"]" % cmd)
    if mig.get("restart", "no") != "no":
        err("migrate: restart is %r, want \"no\"" % mig.get("restart"))
    if depends(mig).get("postgres") != "service_healthy":
        err("migrate: does not depend on postgres service_healthy")

    # supervisor: scalable, after migrate succeeded, longer stop grace.
    for key in ("container_name", "ports"):
        if sup.get(key):
            err("supervisor: has %s, so --scale supervisor=N would clash" % key)
    if depends(sup).get("migrate") != "service_completed_successfully":
        err("supervisor: does not depend on migrate service_completed_successfully")
    grace = env_of(sup).get("ADE_WORKER_SHUTDOWN_GRACE_SECONDS") or "30"
    try:
        g, stop = float(grace), duration(sup.get("stop_grace_period", "10s"))
        if not stop > g:
            err("supervisor: stop_grace_period %ss is not longer than "
                "ADE_WORKER_SHUTDOWN_GRACE_SECONDS=%s" % (stop, grace))
    except ValueError as e:
        err("supervisor: %s" % e)
    m = mounts(sup, compose_dir)
    senv = env_of(sup)
    top = doc.get("volumes") or {}
    for var, default in (("ADE_WORKSPACES_DIR", "/data/workspaces"),
                         ("ADE_VENVS_DIR", "/data/venvs"),
                         ("ADE_PIP_CACHE_DIR", "/data/cache/pip")):
        path = senv.get(var) or default
        kind, src = m.get(path, (None, None))
        if kind != "volume" or not src:
            err("supervisor: %s=%s is not on a named volume" % (var, path))
        elif src not in top and not any((v or {}).get("name") == src for v in top.values()):
            err("supervisor: volume %s is not declared under volumes:" % src)
    finish("docker-compose.yml")


def main():
    mode = sys.argv[1]
    if mode == "context":
        print(copy_context(sys.argv[2]))
    elif mode == "dockerfile":
        check_dockerfile(sys.argv[2])
    elif mode == "compose":
        path, parser = sys.argv[2], sys.argv[3]
        try:
            doc, how = load_compose(path, parser)
        except (ValueError, KeyError) as e:
            print("docker-build: docker-compose.yml: cannot parse: %s" % e, file=sys.stderr)
            sys.exit(1)
        if os.environ.get("DOCKER_BUILD_DUMP"):  # debugging the parsers
            json.dump(doc, sys.stdout, indent=1, sort_keys=True)
            return
        check_compose(doc, os.path.dirname(os.path.abspath(sys.argv[4] if len(sys.argv) > 4 else path)))
        print(how)


main()
PY
check() { python3 "$WORK/check.py" "$@"; }

# ------------------------------------------------- 1-2. context, Dockerfile --
CTX="$WORK/context"
mkdir -p "$CTX"
n=$(check context "$CTX") || fail "copying the build context"
say "build context: $n files after .dockerignore"
check dockerfile "$CTX" || fail "Dockerfile checks"
say "Dockerfile: stages reference scripts/build-binaries.sh and scripts/image-runtime-setup.sh"

# --------------------------------------------------------- 3. build stage ----
OUT="$WORK/out"
(cd "$CTX" && bash scripts/build-binaries.sh "$OUT") || fail "scripts/build-binaries.sh"
for b in supervisor jobrunner; do
  [ -x "$OUT/$b" ] || fail "$b was not built"
done
ver=$("$OUT/supervisor" version) || fail "supervisor version"
[[ $ver == "supervisor "?* ]] || fail "supervisor version printed: $ver"
"$OUT/jobrunner" --help >/dev/null || fail "jobrunner --help"
# The image's layout, on SQLite: migrate, then work the (empty) queue, which
# also finds the jobrunner beside the supervisor as in /usr/local/bin.
DATA="$WORK/data"
mkdir -p "$DATA/db"
(
  export ADE_DATABASE_URL="sqlite:///$DATA/db/ade.sqlite" ADE_WORKSPACES_DIR="$DATA/workspaces" \
    ADE_VENVS_DIR="$DATA/venvs" ADE_PIP_CACHE_DIR="$DATA/cache/pip" ADE_WORKER_LOG_LEVEL=WARNING
  "$OUT/supervisor" migrate >/dev/null 2>"$WORK/migrate.log" || { cat "$WORK/migrate.log" >&2; exit 1; }
  timeout 60 "$OUT/supervisor" --exit-when-idle >/dev/null 2>"$WORK/idle.log" ||
    { cat "$WORK/idle.log" >&2; exit 1; }
) || fail "supervisor migrate / --exit-when-idle on SQLite"
say "binaries: $ver; jobrunner --help ok; migrate + idle queue ok"

# ------------------------------------------------------- 4. runtime stage ----
bash scripts/image-runtime-setup.sh --check || fail "scripts/image-runtime-setup.sh --check"

# ------------------------------------------------------------- 5. compose -----
if [ -n "${DOCKER_BUILD_COMPOSE_PARSER:-}" ]; then
  parser=$DOCKER_BUILD_COMPOSE_PARSER # testing: json is not allowed here; yaml or mini
elif command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  parser=json
else
  parser=yaml
fi
src=docker-compose.yml
if [ "$parser" = json ]; then
  # Client-side only: needs the compose plugin, not a running engine.
  docker compose -f docker-compose.yml config --format json >"$WORK/compose.json" ||
    fail "docker compose config"
  src="$WORK/compose.json"
fi
how=$(check compose "$src" "$parser" "$ROOT/docker-compose.yml") || fail "docker-compose.yml checks"
say "docker-compose.yml consistent (parsed with $how)"

# ------------------------------------------------------------ 6. hadolint -----
if command -v hadolint >/dev/null; then
  hadolint Dockerfile || fail "hadolint Dockerfile"
  lint=", hadolint clean"
else
  say "hadolint not installed: Dockerfile lint skipped"
  lint=""
fi

echo "docker-build: ok (binaries built, runtime check passed, compose consistent$lint)"
