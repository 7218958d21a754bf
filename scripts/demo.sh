#!/usr/bin/env bash
# The main job on the embedded default: build the binaries, migrate a SQLite
# database under ./data, add a sample workspace (configuration package and
# CSV documents), queue a build and runs, work the queue until it is drained
# and print the final status. Works offline with the test engine.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p bin
go build -o bin/ ./cmd/supervisor ./cmd/jobrunner

export ADE_DATABASE_URL="${ADE_DATABASE_URL:-sqlite:///./data/db/ade.sqlite}"
export ADE_WORKSPACES_DIR="${ADE_WORKSPACES_DIR:-./data/workspaces}"
export ADE_VENVS_DIR="${ADE_VENVS_DIR:-./data/venvs}"
# The sample engine and configuration install without an index.
export ADE_ENGINE_SPEC="${ADE_ENGINE_SPEC:-$PWD/test/engine}"
export PIP_NO_INDEX="${PIP_NO_INDEX:-1}"
export ADE_WORKER_LOG_FORMAT="${ADE_WORKER_LOG_FORMAT:-console}"

bin/supervisor migrate
ws="demo-$(date +%s)"
cfg=$(bin/supervisor enqueue configuration --workspace "$ws" --from test/config --name "Sample contacts")
build=$(bin/supervisor enqueue build --workspace "$ws" --configuration "$cfg")
echo "workspace $ws, configuration $cfg, build $build"
for f in test/samples/*.csv; do
  doc=$(bin/supervisor enqueue document --workspace "$ws" --file "$f")
  run=$(bin/supervisor enqueue run --workspace "$ws" --configuration "$cfg" --document "$doc")
  echo "queued run $run for $(basename "$f")"
done

bin/supervisor --exit-when-idle
echo
bin/supervisor status
