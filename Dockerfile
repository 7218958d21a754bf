# ade-worker image: the supervisor and jobrunner binaries on a slim runtime that
# has Python 3 with venv and pip (jobs build a venv per configuration).
#
#   docker build -t ade-worker --build-arg VERSION=$(git describe --always) .
#   docker run --rm -v ade-data:/data ade-worker migrate
#   docker run -d  -v ade-data:/data ade-worker            # works the queue
#
# Without registry access, `scripts/docker-build.sh --local-bases` makes both
# bases with debootstrap and passes them as BUILD_BASE and RUNTIME_BASE.
# scripts/container-test.sh (run by CI) runs jobs in the image.

# The two bases; defaults are the Docker Hub images.
ARG BUILD_BASE=golang:1.26-bookworm
ARG RUNTIME_BASE=python:3.11-slim-bookworm

############################ build ############################
# Same Debian release (bookworm) as the runtime stage, so the cgo binaries
# (mattn/go-sqlite3) link against the glibc they will run with.
FROM ${BUILD_BASE} AS build
WORKDIR /src

# Modules first: these layers stay cached until go.mod/go.sum change. The
# second compiles the main dependencies (cgo SQLite is most of the build
# time) with build-binaries.sh's flags, so a source change rebuilds only ours.
COPY go.mod go.sum ./
RUN go mod download
RUN CGO_ENABLED=1 go build -trimpath -tags urfave_cli_no_docs github.com/mattn/go-sqlite3 \
      gorm.io/driver/sqlite gorm.io/driver/postgres github.com/urfave/cli/v2 github.com/rs/zerolog

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
FROM ${RUNTIME_BASE} AS runtime

# tini as PID 1 reaps orphaned grandchildren (engine processes) and forwards
# SIGTERM to the supervisor, which handles the graceful shutdown itself.
# A base that has it already (the local one) needs no package index.
RUN command -v tini >/dev/null || { apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*; }

# User ade (uid/gid 10001) and /data owned by it.
COPY scripts/image-runtime-setup.sh /tmp/image-runtime-setup.sh
RUN bash /tmp/image-runtime-setup.sh && rm /tmp/image-runtime-setup.sh

COPY --from=build /out/supervisor /out/jobrunner /usr/local/bin/
# The stdlib-only test engine and sample configuration and documents (a few
# kB): the Compose quick start installs this engine offline. Real work sets
# ADE_ENGINE_SPEC to the real engine.
COPY test/engine /usr/local/share/ade-worker/test-engine
COPY test/config /usr/local/share/ade-worker/sample-config
COPY test/samples /usr/local/share/ade-worker/samples
# The sample configuration's build backend is a link to the engine's copy in
# the repository (one file, two packages); here it becomes a file of its own.
RUN cp --remove-destination /usr/local/share/ade-worker/test-engine/_adebuild.py \
    /usr/local/share/ade-worker/sample-config/_adebuild.py

# Defaults point at /data; override any ADE_* setting at run time (see README).
ENV ADE_DATABASE_URL=sqlite:////data/db/ade.sqlite \
    ADE_WORKSPACES_DIR=/data/workspaces \
    ADE_VENVS_DIR=/data/venvs \
    ADE_PIP_CACHE_DIR=/data/cache/pip \
    ADE_WORKER_HTTP_ADDR=:9464

ARG VERSION=""
LABEL org.opencontainers.image.title="ade-worker" \
      org.opencontainers.image.version="${VERSION}"

WORKDIR /data
# Numeric, so runtimes can verify runAsNonRoot.
USER 10001:10001
# Declared after /data was set up: later changes to a VOLUME path are discarded.
VOLUME ["/data"]

# 0 iff GET /readyz on ADE_WORKER_HTTP_ADDR answers 200 (database reachable,
# worker loop alive). Only the worker serves it: `migrate` etc. show unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["supervisor", "health"]

# No CMD: no arguments works the queue; `docker run IMAGE migrate` etc. run a
# subcommand. Exits 0 on SIGTERM after ADE_WORKER_SHUTDOWN_GRACE_SECONDS (30).
ENTRYPOINT ["/usr/bin/tini", "--", "supervisor"]
