#!/usr/bin/env bash
# Build the ade-worker image.
#
#   scripts/docker-build.sh [--local-bases] [TAG]      (TAG: ade-worker:local)
#
# The image is also tagged ade-worker:VERSION (the version stamped into the
# binaries), the tag to pin in deploy/kubernetes's kustomization (never
# :latest): kustomize edit set image ade-worker=REGISTRY/ade-worker:VERSION.
#
# Plain: `docker build` with the Dockerfile's default bases (golang and python
# images from Docker Hub). --local-bases: no registry needed. Two bookworm
# bases are made with debootstrap from a Debian mirror (root, a minute each)
# and kept as local images, so a second call reuses them:
#
#   ade-local/golang:1.26-bookworm   gcc, libc6-dev and this host's Go tree
#   ade-local/python:3.11-bookworm   python3 with venv and pip, tini
#
# Env: ADE_DEBIAN_MIRROR (default: the first mirror in /etc/apt), ADE_GOROOT
# (/usr/local/go), VERSION (default `git describe`). Builds use host
# networking (`go mod download` reaches the module proxy; no bridge needed).
set -euo pipefail
cd "$(dirname "$0")/.."

LOCAL=0
if [ "${1:-}" = --local-bases ]; then LOCAL=1; shift; fi
TAG=${1:-ade-worker:local}
GO_BASE=ade-local/golang:1.26-bookworm
PY_BASE=ade-local/python:3.11-bookworm
GOROOT_HOST=${ADE_GOROOT:-/usr/local/go}
say() { echo "docker-build: $*" >&2; }

mirror() {
  if [ -n "${ADE_DEBIAN_MIRROR:-}" ]; then echo "$ADE_DEBIAN_MIRROR"; return; fi
  local m
  m=$(grep -hsE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources | awk '{print $2; exit}')
  [ -n "$m" ] || m=$(grep -hsE '^deb .*/debian/? bookworm' /etc/apt/sources.list | awk '{print $2; exit}')
  echo "${m:-http://deb.debian.org/debian}"
}

# make_base NAME PACKAGES [SETUP_FN [ENV...]]: debootstrap a bookworm root, let
# SETUP_FN add to it, import it as NAME with ENV set. Skipped when NAME exists.
make_base() {
  local name=$1 pkgs=$2 setup=${3:-} dir e
  if docker image inspect "$name" >/dev/null 2>&1; then say "$name exists"; return; fi
  command -v debootstrap >/dev/null || { say "debootstrap missing: apt-get install debootstrap"; exit 1; }
  dir=$(mktemp -d /tmp/ade-base.XXXXXX)
  say "debootstrap $name ($pkgs) from $(mirror)"
  debootstrap --variant=minbase --include="$pkgs" bookworm "$dir" "$(mirror)" >"$dir.log" 2>&1 ||
    { tail -20 "$dir.log" >&2; say "debootstrap of $name failed (log $dir.log)"; exit 1; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  [ -z "$setup" ] || "$setup" "$dir"
  local changes=(--change 'ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'ENV LANG=C.UTF-8')
  for e in "${@:4}"; do changes+=(--change "ENV $e"); done
  tar -C "$dir" -c . | docker import "${changes[@]}" - "$name" >/dev/null
  rm -rf "$dir" "$dir.log"
  say "made $name"
}

# The Go tree and this host's CA bundle (a proxy's CA may be in it, and
# `go mod download` checks certificates).
go_setup() {
  [ -x "$GOROOT_HOST/bin/go" ] || { say "no Go at $GOROOT_HOST (set ADE_GOROOT)"; exit 1; }
  cp -a "$GOROOT_HOST" "$1/usr/local/go"
  cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"
}

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
args=(--network host --build-arg "VERSION=$VERSION")
if [ "$LOCAL" = 1 ]; then
  make_base "$GO_BASE" gcc,libc6-dev,ca-certificates go_setup GOTOOLCHAIN=local &
  make_base "$PY_BASE" python3,python3-venv,python3-pip,ca-certificates,tini &
  wait -n && wait -n || { wait; exit 1; }
  args+=(--build-arg "BUILD_BASE=$GO_BASE" --build-arg "RUNTIME_BASE=$PY_BASE")
fi
# The legacy builder when the buildx plugin is missing (Debian's docker.io).
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
say "docker build -t $TAG ${args[*]}"
log=$(mktemp)
docker build -t "$TAG" "${args[@]}" . >"$log" 2>&1 || { tail -40 "$log" >&2; rm -f "$log"; say "build failed"; exit 1; }
rm -f "$log"
# A Docker tag allows [A-Za-z0-9_.-]; git describe gives that already.
VERSION_TAG=ade-worker:$(printf '%s' "$VERSION" | tr -c 'A-Za-z0-9_.-' '-')
docker tag "$TAG" "$VERSION_TAG"
say "built $TAG (also $VERSION_TAG: pin that one in your kustomize overlay)"
