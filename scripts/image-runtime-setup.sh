#!/usr/bin/env bash
# Runtime set-up of the ade-worker image; the Dockerfile's runtime stage runs it
# as root. scripts/container-test.sh checks the result in the built image.
#
# The steps: check that python3 makes a venv with a working pip (jobs build a
# venv per configuration), group and user `ade` (uid/gid 10001), and /data
# with the default sub-directories of the image's ADE_* settings, owned by
# that user. Named volumes mounted over them copy that ownership on first use.
set -euo pipefail

ADE_UID=10001
ADE_USER=ade
DATA=/data
DIRS=("$DATA" "$DATA/db" "$DATA/workspaces" "$DATA/venvs" "$DATA/cache" "$DATA/cache/pip")
PATH="$PATH:/usr/sbin:/sbin"

say() { echo "image-runtime-setup: $*"; }
die() { echo "image-runtime-setup: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it changes the system it runs on)"
command -v tini >/dev/null || die "tini not installed (the image's entrypoint)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
command -v python3 >/dev/null || die "python3 not on PATH"
python3 -m venv "$tmp/venv" || die "python3 -m venv failed (python3-venv/ensurepip missing?)"
pip=$("$tmp/venv/bin/python" -m pip --version) || die "pip does not work inside a new venv"
say "ok: $(python3 --version 2>&1) makes venvs with ${pip%% from *}"

getent group "$ADE_USER" >/dev/null || groupadd --gid "$ADE_UID" "$ADE_USER"
getent passwd "$ADE_USER" >/dev/null ||
  useradd --no-log-init --uid "$ADE_UID" --gid "$ADE_UID" --home-dir "/home/$ADE_USER" \
    --create-home --shell /usr/sbin/nologin "$ADE_USER"
install -d -o "$ADE_UID" -g "$ADE_UID" -m 0755 "${DIRS[@]}"
say "done: user $ADE_USER ($ADE_UID), ${DIRS[*]}"
