#!/usr/bin/env bash
# Runtime set-up of the ade-worker image; the Dockerfile's runtime stage runs it
# as root. Kept out of the Dockerfile so CI can exercise it without Docker.
#
#   scripts/image-runtime-setup.sh          do it (image build only: needs root,
#                                           changes the system it runs on)
#   scripts/image-runtime-setup.sh --check  change nothing: check that python3 can
#                                           make a venv with a working pip and that
#                                           the tools exist, print the steps
#
# The steps: group and user `ade` (uid/gid 10001), and /data with the default
# sub-directories of the image's ADE_* settings, owned by that user. Named
# volumes mounted over them copy that ownership on first use.
set -euo pipefail

ADE_UID=10001
ADE_USER=ade
DATA=/data
DIRS=("$DATA" "$DATA/db" "$DATA/workspaces" "$DATA/venvs" "$DATA/cache" "$DATA/cache/pip")

case "${1:-}" in
  --check) CHECK=1 ;;
  "") CHECK=0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
PATH="$PATH:/usr/sbin:/sbin"

say() { echo "image-runtime-setup: $*"; }
die() { echo "image-runtime-setup: FAILED: $*" >&2; exit 1; }
TMPDIRS=()
cleanup() { if [ ${#TMPDIRS[@]} -gt 0 ]; then rm -rf "${TMPDIRS[@]}"; fi; }
trap cleanup EXIT

# Jobs build a venv per configuration and pip-install into it, so this is the
# one runtime requirement beyond the two binaries. Checked in both modes.
check_python() {
  command -v python3 >/dev/null || die "python3 not on PATH"
  local tmp pip
  tmp=$(mktemp -d)
  TMPDIRS+=("$tmp")
  python3 -m venv "$tmp/venv" || die "python3 -m venv failed (python3-venv/ensurepip missing?)"
  pip=$("$tmp/venv/bin/python" -m pip --version) || die "pip does not work inside a new venv"
  say "ok: $(python3 --version 2>&1) makes venvs with ${pip%% from *}"
}

# step CMD...: run it, or with --check say it would and check CMD exists.
step() {
  if [ "$CHECK" = 1 ]; then
    command -v "$1" >/dev/null || die "$1 not found (needed by: $*)"
    say "would run: $*"
  else
    say "+ $*"
    "$@"
  fi
}

check_python

if [ "$CHECK" = 0 ]; then
  [ "$(id -u)" = 0 ] || die "must run as root (use --check to only verify)"
  command -v tini >/dev/null || die "tini not installed (the image's entrypoint)"
fi

if [ "$CHECK" = 0 ] && getent group "$ADE_USER" >/dev/null; then
  say "group $ADE_USER exists"
else
  step groupadd --gid "$ADE_UID" "$ADE_USER"
fi
if [ "$CHECK" = 0 ] && getent passwd "$ADE_USER" >/dev/null; then
  say "user $ADE_USER exists"
else
  step useradd --no-log-init --uid "$ADE_UID" --gid "$ADE_UID" --home-dir "/home/$ADE_USER" \
    --create-home --shell /usr/sbin/nologin "$ADE_USER"
fi
step install -d -o "$ADE_UID" -g "$ADE_UID" -m 0755 "${DIRS[@]}"

if [ "$CHECK" = 1 ]; then
  say "check passed (nothing changed)"
else
  say "done"
fi
