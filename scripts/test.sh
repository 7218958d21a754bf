#!/usr/bin/env bash
# The whole test suite: static checks, unit tests, then the end-to-end tests
# that drive the real binaries against real databases, processes and venvs.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l cmd pkg test deploy)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" $unformatted >&2
  exit 1
fi
go vet ./...
# The timeout only stops a hang: the end-to-end package takes about 4
# minutes on a quiet 2-core machine and under 6 with both cores busy.
go test -count=1 -timeout 50m -parallel 4 "$@" ./...
# The Kubernetes manifests' test is its own module (k8s.io and KEDA stay out
# of the worker's dependencies): strict decoding and the KEDA query on PostgreSQL.
(cd deploy/kubernetes && go vet ./... && go test -count=1 -timeout 10m ./...)
# The alert rules: promtool's syntax check and their unit tests.
bash scripts/check-alerts.sh
