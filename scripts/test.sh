#!/usr/bin/env bash
# The whole test suite: static checks, unit tests, then the end-to-end tests
# that drive the real binaries against real databases, processes and venvs.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l cmd pkg test)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" $unformatted >&2
  exit 1
fi
go vet ./...
go test -count=1 -timeout 25m -parallel 4 "$@" ./...
