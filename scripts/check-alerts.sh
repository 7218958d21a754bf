#!/usr/bin/env bash
# Checks the Prometheus alert rules (deploy/prometheus/alerts.yaml) and runs
# their unit tests (alerts_test.yaml) with promtool. PROMTOOL names the
# binary; default: promtool on PATH (.ci/run installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
promtool=${PROMTOOL:-promtool}
if ! command -v "$promtool" >/dev/null 2>&1; then
  echo "check-alerts: $promtool not found: install it (Debian: see .ci/run) or set PROMTOOL" >&2
  exit 1
fi
"$promtool" check rules deploy/prometheus/alerts.yaml
"$promtool" test rules deploy/prometheus/alerts_test.yaml
