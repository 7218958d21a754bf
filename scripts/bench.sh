#!/usr/bin/env bash
# Benchmarks of the real supervisor and jobrunner processes (issue 5; see
# BENCHMARKS.md). Builds the binaries, makes its own SQLite files and
# PostgreSQL databases (created and dropped through ADE_BENCH_POSTGRES_URL,
# default postgres://postgres@127.0.0.1:5432/postgres) and prints a table.
# Every argument goes to the bench tool:
#
#   scripts/bench.sh --quick                      # smoke run, both backends (CI)
#   scripts/bench.sh --workload pickup --backend postgres
#   scripts/bench.sh --markdown > table.md        # the table for BENCHMARKS.md
#   scripts/bench.sh --help
#
# Exits non-zero when a workload fails; a missed target is only marked ✗.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
exec go run ./test/bench "$@"
