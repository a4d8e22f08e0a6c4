# syntax=docker/dockerfile:1
# The collaboration server: `python -m app` on port 5000. Settings come from the environment
# (see app/config.py): MONGODB_URI selects MongoDB, otherwise sessions live in SQLite under
# DATA_DIR (/data, a volume).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtualenv with the project and its `fast` extra ------------------------------
FROM ${PYTHON_IMAGE} AS build
# fast-diff-match-patch publishes x86_64 wheels only: elsewhere (arm64) pip compiles it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# pyproject.toml names README.md as the package's readme (the glob tolerates its absence).
COPY pyproject.toml README.md* ./
COPY app ./app
RUN pip install ".[fast]"

# -- runtime --------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home \
       --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown app:app /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=5000 \
    DATA_DIR=/data
WORKDIR /home/app
USER app
VOLUME ["/data"]
EXPOSE 5000
# aiohttp handles SIGTERM: it disconnects the clients and flushes pending writes to the store.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('PORT', '5000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/api/health', timeout=4).status == 200 else 1)"]
CMD ["python", "-m", "app"]
