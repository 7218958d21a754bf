#!/usr/bin/env bash
# Build both ade-worker binaries (supervisor and jobrunner) into OUT_DIR.
# Used by the Dockerfile's build stage, the end-to-end tests and the bench.
#
#   scripts/build-binaries.sh OUT_DIR
#
# VERSION (env, or the Dockerfile's build ARG) is stamped into both binaries;
# unset or empty means `git describe`, else "dev" (the image build has no .git).
# cgo is required for the supervisor: gorm.io/driver/sqlite uses mattn/go-sqlite3.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
OUT=$1
cd "$(dirname "$0")/.."

if [ -z "${VERSION:-}" ]; then
  VERSION=$(git describe --tags --always --dirty 2>/dev/null || true)
  VERSION=${VERSION:-dev}
fi

mkdir -p "$OUT"
echo "build-binaries: version $VERSION -> $OUT" >&2
# urfave_cli_no_docs drops the man-page and Markdown generators (and their
# package initialisation, which every short-lived jobrunner would pay for).
flags=(-trimpath -tags urfave_cli_no_docs -ldflags "-s -w -X main.version=$VERSION")
CGO_ENABLED=1 go build "${flags[@]}" -o "$OUT/" ./cmd/supervisor
# The jobrunner needs no cgo: static, it starts faster (it runs twice per job
# step, as itself and as the exec-with-limits shim).
CGO_ENABLED=0 go build "${flags[@]}" -o "$OUT/" ./cmd/jobrunner
