#!/usr/bin/env bash
# Container tests: the real image on a real Docker engine, against the host's
# PostgreSQL (fresh databases, dropped afterwards). Run by .ci/run; needs root.
#
#   scripts/container-test.sh
#
# Installs what is missing (docker.io, debootstrap, docker-compose), starts
# dockerd when none answers (no bridge: every container uses host networking)
# and stops it again, builds the image on local bases (scripts/docker-build.sh
# --local-bases; the bases are kept, so a second run reuses them), then:
#   1. as the image's user (uid 10001), read-only root filesystem: migrate,
#      enqueue a configuration, documents, a build and runs, work the queue
#      with --exit-when-idle, check the rows;
#   1b. the hostile configuration package (test/hostile) in the image as uid
#      10001: every attack of its build and its run is refused by the
#      sandbox, its own work succeeds;
#   2. `docker stop` of a supervisor with a running job exits 0 within the
#      grace and hands the job back (queued, attempt not counted); the
#      healthcheck (`supervisor health`) turns healthy first;
#   3. Compose (with docker-compose.ci.yml): three supervisors after one
#      migrate work 200 runs; `docker-compose down` is graceful.
# ADE_CT_PREBUILT=1 skips the build and tests the image ADE_CT_IMAGE
# (default ade-worker:ci) as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${ADE_CT_IMAGE:-ade-worker:ci}
PG_ADMIN=${ADE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
TAG=ct$$
WORK=$(mktemp -d /tmp/ade-ct.XXXXXX)
T0=$SECONDS
DBS=() CONTAINERS=() VOLUMES=() COMPOSE_UP=0 DOCKERD_PID=
say() { printf 'container-test [%3ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

cleanup() {
  local status=$? c
  set +e
  if [ "$status" != 0 ]; then # what the containers said, for the CI log
    for c in "${CONTAINERS[@]}"; do docker logs --tail 30 "$c" 2>&1 | sed "s/^/$c: /" >&2; done
    [ "$COMPOSE_UP" = 0 ] || compose logs --no-color --tail 30 >&2 2>&1
  fi
  [ "$COMPOSE_UP" = 0 ] || compose down -v -t 5 >/dev/null 2>&1
  [ ${#CONTAINERS[@]} = 0 ] || docker rm -f "${CONTAINERS[@]}" >/dev/null 2>&1
  [ ${#VOLUMES[@]} = 0 ] || docker volume rm "${VOLUMES[@]}" >/dev/null 2>&1
  for db in "${DBS[@]}"; do psql "$PG_ADMIN" -Xqc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; done
  if [ -n "$DOCKERD_PID" ]; then kill "$DOCKERD_PID"; wait "$DOCKERD_PID" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

setup_engine() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  docker info >/dev/null 2>&1 && return
  say "starting dockerd (no bridge, no iptables)"
  dockerd --bridge=none --iptables=false --ip-masq=false >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  tail -20 "$WORK/dockerd.log" >&2
  die "dockerd did not answer within 60 s"
}

# newdb NAME: a fresh database (dropped at exit); its URL in NEWDB. Not
# called in $(...): the list of databases to drop must survive.
newdb() {
  local name=ade_${TAG}_$1
  psql "$PG_ADMIN" -Xqc "CREATE DATABASE $name" >/dev/null || die "cannot create database $name at $PG_ADMIN"
  DBS+=("$name")
  NEWDB=${PG_ADMIN%/*}/$name
}
q() { psql "$1" -XAtqc "$2"; }

# wait_for WHAT SECONDS CMD...: until CMD succeeds, or fail naming WHAT.
wait_for() {
  local what=$1 limit=$2 end=$((SECONDS + $2))
  shift 2
  until "$@"; do
    [ $SECONDS -lt $end ] || die "$what: not within $limit s"
    sleep 1
  done
}
# expect WHAT GOT WANT [DETAIL]: DETAIL is shown when GOT is not WANT.
expect() { [ "$2" = "$3" ] || die "$1: got '$2', want '$3'${4:+ ($4)}"; }


SHARE=/usr/local/share/ade-worker
# The settings every test container gets: the image's test engine, offline.
ENV_ARGS=(-e ADE_ENGINE_SPEC=$SHARE/test-engine -e PIP_NO_INDEX=1 -e ADE_WORKER_LOG_FORMAT=console)

# ct_args DB VOLUME: sets CT_ARGS, the image as Kubernetes runs it (its own
# user, read-only root, writable /tmp), host networking, VOLUME at /data.
ct_args() {
  CT_ARGS=(--network host --read-only --tmpfs /tmp:rw,exec,size=256m -e HOME=/tmp -e TMPDIR=/tmp
    -e ADE_DATABASE_URL="$1" "${ENV_ARGS[@]}" -v "$2:/data" -v "$WORK/in:/in:ro")
}
ct_run() {
  ct_args "$1" "$2"
  shift 2
  timeout 600 docker run --rm "${CT_ARGS[@]}" "$@"
}

test_jobs_in_image() {
  say "1. jobs in the image as uid 10001"
  local db vol=ade-$TAG-data cfg out
  newdb jobs
  db=$NEWDB
  VOLUMES+=("$vol")
  mkdir -p "$WORK/in"
  expect "the image's user" "$(docker run --rm --entrypoint id "$IMAGE" -u):$(docker run --rm --entrypoint id "$IMAGE" -g)" "10001:10001"
  ct_run "$db" "$vol" "$IMAGE" migrate || die "migrate in the image"
  out=$(ct_run "$db" "$vol" --entrypoint sh "$IMAGE" -ec '
    cfg=$(supervisor enqueue configuration --workspace ws1 --from '$SHARE'/sample-config --name Sample)
    supervisor enqueue build --workspace ws1 --configuration "$cfg" >/dev/null
    for f in '$SHARE'/samples/*.csv; do
      doc=$(supervisor enqueue document --workspace ws1 --file "$f")
      supervisor enqueue run --workspace ws1 --configuration "$cfg" --document "$doc" >/dev/null
    done
    echo "$cfg"' 2>"$WORK/enqueue.log") || { cat "$WORK/enqueue.log" >&2; die "enqueue in the image"; }
  cfg=$out
  ct_run "$db" "$vol" "$IMAGE" --exit-when-idle >"$WORK/jobs.log" 2>&1 || { tail -30 "$WORK/jobs.log" >&2; die "supervisor --exit-when-idle"; }
  expect "builds" "$(q "$db" "SELECT status || ' ' || count(*) FROM builds GROUP BY status")" "ready 1" \
    "$(q "$db" "SELECT error_message FROM builds WHERE status <> 'ready'")"
  expect "runs" "$(q "$db" "SELECT status || ' ' || count(*) FROM runs WHERE configuration_id = '$cfg' AND exit_code = 0 GROUP BY status")" "succeeded 3"
  expect "documents" "$(q "$db" "SELECT status || ' ' || count(*) FROM documents GROUP BY status")" "processed 3"
  expect "run metrics" "$(q "$db" "SELECT count(*) FROM run_metrics")" "3"
  # The outputs are on the volume, written by uid 10001.
  expect "output files not owned by 10001" "$(docker run --rm -v "$vol:/data" --entrypoint find "$IMAGE" /data/workspaces ! -uid 10001 -print)" ""
  say "1. ok: build ready, 3 runs succeeded, read-only root, files owned by 10001"
  DB_JOBS=$db VOL_JOBS=$vol CFG_JOBS=$cfg
}

test_hostile_in_image() {
  say "1b. a hostile configuration package in the image as uid 10001"
  local out
  # The package with its backend file itself, not the repository's link.
  cp -rL test/hostile "$WORK/hostile"
  # In the container: the supervisor and a process standing for another
  # tenant's engine start first, so the package can aim at their pids; it
  # attacks from its install code (the build) and its import (the run).
  out=$(ct_run "$DB_JOBS" "$VOL_JOBS" -v "$WORK/hostile:/hostile-src:ro" --entrypoint sh "$IMAGE" -ec '
    supervisor 2>/tmp/sup.log & sup=$!
    sleep 600 & victim=$!
    python3 -c "import socket, time; s = socket.socket(socket.AF_UNIX); s.bind(\"\\0ade-ct-listener\"); s.listen(); p = socket.socket(socket.AF_UNIX); p.bind(\"/tmp/ade-ct.sock\"); p.listen(); time.sleep(600)" &
    pip_cache=${ADE_PIP_CACHE_DIR:-/data/cache/pip}; mkdir -p "$pip_cache"
    cp -r /hostile-src /tmp/hostile
    other_doc=$(find /data/workspaces/ws1/documents -type f | head -1)
    other_out=$(find /data/workspaces/ws1/runs -path "*/output/*" -type f | head -1)
    other_venv=$(find /data/venvs/ws1 -path "*site-packages/ade_engine/__init__.py" | head -1)
    printf "{\"supervisor_pid\": %d, \"database_port\": 5432, \"index_port\": 443, \"abstract_socket\": \"ade-ct-listener\", \"other_document\": \"%s\", \"other_output\": \"%s\", \"other_run_dir\": \"%s\", \"other_venv_file\": \"%s\", \"other_engine_pid\": %d, \"secret_file\": \"/proc/1/environ\", \"unix_socket\": \"/tmp/ade-ct.sock\", \"pip_cache_root\": \"%s\"}" \
      "$sup" "$other_doc" "$other_out" "$(dirname "$other_out")" "$other_venv" "$victim" "$pip_cache" >/tmp/hostile/targets.json
    cfg=$(supervisor enqueue configuration --workspace wsh --from /tmp/hostile)
    supervisor enqueue build --workspace wsh --configuration "$cfg" >/dev/null
    doc=$(supervisor enqueue document --workspace wsh --file /usr/local/share/ade-worker/samples/minimal.csv)
    run=$(supervisor enqueue run --workspace wsh --configuration "$cfg" --document "$doc")
    for _ in $(seq 300); do
      st=$(supervisor inspect --json "$run" | grep -o "\"status\": *\"[a-z]*\"" | head -1 | grep -o "[a-z]*\"\$" | tr -d "\"")
      case "$st" in succeeded|failed|cancelled) break ;; esac
      sleep 1
    done
    kill -TERM "$sup"; wait "$sup" || true
    kill -0 "$victim" || { echo "victim killed"; exit 1; }
    echo "status $st"
    cat /data/venvs/wsh/*/*/.venv/hostile-build-report.json; echo
    cat /data/workspaces/wsh/runs/$run/output/hostile-report.json' 2>"$WORK/hostile.log") ||
    { cat "$WORK/hostile.log" >&2; echo "$out" >&2; die "the hostile package in the image"; }
  # Not `echo | head | grep -q` under pipefail: the reader leaves early and a
  # report longer than one write gets the echo a SIGPIPE (failed CI, stop 24).
  [[ ${out%%$'\n'*} == "status succeeded" ]] || { echo "$out" >&2; die "the hostile run did not succeed"; }
  echo "$out" | tail -n +2 | python3 -c '
import json, sys
text = sys.stdin.read()
dec, pos, reports = json.JSONDecoder(), 0, []
while pos < len(text):
    if text[pos].isspace():
        pos += 1
        continue
    obj, pos = dec.raw_decode(text, pos)
    reports.append(obj)
assert len(reports) == 2, "want the build and the run report, got %d" % len(reports)
bad = []
for job, rep in zip(("build", "run"), reports):
    for name, r in rep["attacks"].items():
        if r["ok"] or r.get("errno") not in (1, 13):
            bad.append("%s %s: %s" % (job, name, r))
    for name, r in rep["legit"].items():
        if not r["ok"] and not (name == "connect_index_port" and r.get("errno") == 111):
            bad.append("%s legit %s: %s" % (job, name, r))
if bad:
    sys.exit("not refused / not allowed:\n" + "\n".join(bad))
print("%d build and %d run attacks refused" % (len(reports[0]["attacks"]), len(reports[1]["attacks"])))
' >"$WORK/hostile.check" 2>&1 || { cat "$WORK/hostile.check" >&2; die "the sandbox in the image"; }
  say "1b. ok: $(cat "$WORK/hostile.check"); the other process lives; uid 10001, read-only root"
}

run_field() { q "$DB_JOBS" "SELECT $2 FROM runs WHERE id = '$1'"; }
run_is() { [ "$(run_field "$1" status)" = "$2" ]; }
health_is() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$1")" = "$2" ]; }

test_stop_hands_back() {
  say "2. docker stop with a running job"
  local name=ade-$TAG-stop run port=$((20000 + RANDOM % 20000)) t0 took
  printf '#ade-test: sleep=300\nEmail,Name\na@example.net,Alpha\n' >"$WORK/in/sleep.csv"
  run=$(ct_run "$DB_JOBS" "$VOL_JOBS" --entrypoint sh "$IMAGE" -ec '
    doc=$(supervisor enqueue document --workspace ws1 --file /in/sleep.csv)
    supervisor enqueue run --workspace ws1 --configuration '"$CFG_JOBS"' --document "$doc"' 2>"$WORK/enqueue2.log") ||
    { cat "$WORK/enqueue2.log" >&2; die "enqueue the sleeping run"; }
  ct_args "$DB_JOBS" "$VOL_JOBS"
  CONTAINERS+=("$name")
  docker run -d --name "$name" "${CT_ARGS[@]}" -e ADE_WORKER_SHUTDOWN_GRACE_SECONDS=3 \
    -e ADE_WORKER_HTTP_ADDR=127.0.0.1:$port --health-interval 2s "$IMAGE" >/dev/null
  wait_for "run $run running" 120 run_is "$run" running
  wait_for "healthcheck healthy (supervisor health)" 90 health_is "$name" healthy
  t0=$SECONDS
  docker stop -t 30 "$name" >/dev/null
  took=$((SECONDS - t0))
  expect "exit code after docker stop" "$(docker inspect -f '{{.State.ExitCode}}' "$name")" 0
  [ $took -lt 30 ] || die "docker stop took $took s: the supervisor ignored its 3 s grace"
  expect "the run after docker stop (status, claimed_by, attempts)" \
    "$(run_field "$run" "status || ',' || coalesce(claimed_by, '') || ',' || attempt_count")" "queued,,0"
  say "2. ok: healthy, stopped in $took s with exit 0, run handed back (queued, attempt not counted)"
}

compose() {
  ADE_WORKER_IMAGE=$IMAGE ADE_CI_DATABASE_URL=$DB_COMPOSE \
    timeout 300 docker-compose -p "ade$TAG" -f docker-compose.yml -f docker-compose.ci.yml "$@"
}
started_ns() { date -d "$(docker inspect -f "{{.State.$2}}" "$1")" +%s%N; }
runs_done() {
  local n
  n=$(q "$DB_COMPOSE" "SELECT count(*) FROM runs WHERE status IN ('succeeded', 'failed', 'cancelled')")
  [ "$n" = 200 ]
}

test_compose_three_supervisors() {
  say "3. docker-compose up --scale supervisor=3"
  local mig sups id t0 code pids=()
  newdb compose
  DB_COMPOSE=$NEWDB
  COMPOSE_UP=1
  compose up -d --scale supervisor=3 >"$WORK/compose-up.log" 2>&1 || { cat "$WORK/compose-up.log" >&2; die "compose up"; }
  mig=$(docker ps -aq --filter "label=com.docker.compose.project=ade$TAG" --filter label=com.docker.compose.service=migrate)
  sups=$(compose ps -q supervisor)
  expect "migrate containers" "$(echo "$mig" | wc -w)" 1
  expect "supervisor containers" "$(echo "$sups" | wc -w)" 3
  expect "migrate exit code" "$(docker inspect -f '{{.State.ExitCode}}' "$mig")" 0
  for id in $sups; do
    [ "$(started_ns "$id" StartedAt)" -gt "$(started_ns "$mig" FinishedAt)" ] || die "supervisor $id started before migrate finished"
  done
  # docker run, not `compose run`: Compose 1.29 links the one-off container
  # to the other services, which host networking refuses.
  timeout 600 docker run --rm --network host -e ADE_DATABASE_URL="$DB_COMPOSE" "${ENV_ARGS[@]}" \
    -v "ade${TAG}_workspaces:/data/workspaces" --entrypoint sh "$IMAGE" -ec '
    cfg=$(supervisor enqueue configuration --workspace ws --from /usr/local/share/ade-worker/sample-config)
    supervisor enqueue build --workspace ws --configuration "$cfg" >/dev/null
    for p in 1 2 3 4; do
      for i in $(seq 50); do
        doc=$(supervisor enqueue document --workspace ws --file /usr/local/share/ade-worker/samples/minimal.csv)
        supervisor enqueue run --workspace ws --configuration "$cfg" --document "$doc" >/dev/null
      done &
      pids="${pids:-} $!"
    done
    for p in $pids; do wait "$p"; done' >"$WORK/enqueue3.log" 2>&1 || { tail -20 "$WORK/enqueue3.log" >&2; die "enqueue 200 runs"; }
  say "3. 200 runs queued"
  wait_for "200 runs finished" 600 runs_done
  expect "runs" "$(q "$DB_COMPOSE" "SELECT status || ' ' || count(*) FROM runs GROUP BY status")" "succeeded 200"
  expect "workers that claimed runs" "$(q "$DB_COMPOSE" "SELECT count(DISTINCT claimed_by) FROM runs")" 3
  say "3. runs per worker: $(q "$DB_COMPOSE" "SELECT string_agg(n::text, ' ') FROM (SELECT count(*) n FROM runs GROUP BY claimed_by) c")"
  for id in $sups; do
    docker wait "$id" >"$WORK/exit.$id" 2>&1 &
    pids+=($!)
  done
  t0=$SECONDS
  compose down -v >"$WORK/compose-down.log" 2>&1 || { cat "$WORK/compose-down.log" >&2; die "compose down"; }
  COMPOSE_UP=0
  wait "${pids[@]}"
  for id in $sups; do
    code=$(cat "$WORK/exit.$id")
    expect "supervisor exit code after compose down" "$code" 0
  done
  expect "containers left" "$(docker ps -aq --filter "label=com.docker.compose.project=ade$TAG")" ""
  expect "jobs left running" "$(q "$DB_COMPOSE" "SELECT count(*) FROM runs WHERE status = 'running'")" 0
  say "3. ok: migrate once first, 200 runs over 3 workers, down in $((SECONDS - t0)) s, every supervisor exit 0"
}

setup_engine
if [ -n "${ADE_CT_PREBUILT:-}" ]; then
  say "testing the existing image $IMAGE (ADE_CT_PREBUILT)"
else
  say "building $IMAGE"
  bash scripts/docker-build.sh --local-bases "$IMAGE"
  say "image built"
fi
test_jobs_in_image
test_hostile_in_image
test_stop_hands_back
test_compose_three_supervisors
say "all container tests passed in $((SECONDS - T0)) s"
