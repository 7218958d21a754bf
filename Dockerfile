# ade-worker image: the supervisor and jobrunner binaries on a slim runtime that
# has Python 3 with venv and pip (jobs build a venv per configuration).
#
#   docker build -t ade-worker --build-arg VERSION=$(git describe --always) .
#   docker run --rm -v ade-data:/data ade-worker migrate
#   docker run -d  -v ade-data:/data ade-worker            # works the queue
#
# CI has no Docker engine: scripts/docker-build.sh runs the same scripts as the
# stages below, outside Docker, and checks this file references them.

############################ build ############################
# Same Debian release (bookworm) as the runtime stage, so the cgo binaries
# (mattn/go-sqlite3) link against the glibc they will run with.
FROM golang:1.26-bookworm AS build
WORKDIR /src

# Modules first: this layer stays cached until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# Empty means `git describe`, which finds no .git here (see .dockerignore): "dev".
ARG VERSION=""
RUN bash scripts/build-binaries.sh /out \
 && /out/supervisor version \
 && /out/jobrunner --help >/dev/null

########################### runtime ###########################
# python:3.11-slim-bookworm rather than debian:bookworm-slim + apt python3:
# its Python ships venv and ensurepip/pip in the base (Debian splits them into
# python3-venv/python3-pip), it is the same bookworm glibc as the build stage,
# and it is Python 3.11 like bookworm's own python3.
FROM python:3.11-slim-bookworm AS runtime

# tini as PID 1 reaps orphaned grandchildren (engine processes) and forwards
# SIGTERM to the supervisor, which handles the graceful shutdown itself.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

# User ade (uid/gid 10001) and /data owned by it; checked by CI with --check.
COPY scripts/image-runtime-setup.sh /tmp/image-runtime-setup.sh
RUN bash /tmp/image-runtime-setup.sh && rm /tmp/image-runtime-setup.sh

COPY --from=build /out/supervisor /out/jobrunner /usr/local/bin/

# Defaults point at /data; override any ADE_* setting at run time (see README).
ENV ADE_DATABASE_URL=sqlite:////data/db/ade.sqlite \
    ADE_WORKSPACES_DIR=/data/workspaces \
    ADE_VENVS_DIR=/data/venvs \
    ADE_PIP_CACHE_DIR=/data/cache/pip

ARG VERSION=""
LABEL org.opencontainers.image.title="ade-worker" \
      org.opencontainers.image.version="${VERSION}"

WORKDIR /data
# Numeric, so runtimes can verify runAsNonRoot.
USER 10001:10001
# Declared after /data was set up: later changes to a VOLUME path are discarded.
VOLUME ["/data"]

# No CMD: no arguments works the queue; `docker run IMAGE migrate` etc. run a
# subcommand. Exits 0 on SIGTERM after ADE_WORKER_SHUTDOWN_GRACE_SECONDS (30).
ENTRYPOINT ["/usr/bin/tini", "--", "supervisor"]
