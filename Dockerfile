# One image for every process of the system: the Dagster code-location gRPC server, the Dagster
# daemon and webserver, the live runner (launched by Dagster runs) and the Streamlit dashboard.
# Built with `docker build -t intraday-trader:<tag> .`; see docs/operations.md.
# No secret is baked in: credentials arrive as environment variables at run time.

# ---- build: resolve and install the pinned dependencies into a venv --------------------------
FROM python:3.11.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build

# Dependencies before the source, so a code change does not reinstall them. The list comes from
# pyproject.toml (runtime dependencies, the `dashboard` and `deploy` extras), every version from constraints.txt.
COPY constraints.txt pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['dashboard'] + p['optional-dependencies']['deploy']))" > requirements.txt \
    && pip install --no-cache-dir -c constraints.txt -r requirements.txt

# ---- runtime: the venv, the source, a non-root user ------------------------------------------
FROM python:3.11.11-slim-bookworm AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    TRADING_PROJECT_ROOT=/app \
    DAGSTER_HOME=/opt/dagster/home \
    MPLCONFIGDIR=/tmp/matplotlib

RUN groupadd --system --gid 10001 trader \
    && useradd --system --uid 10001 --gid trader --home-dir /app --shell /usr/sbin/nologin trader \
    && mkdir -p /app/var /opt/dagster/home/storage \
    && chown trader:trader /app/var /opt/dagster/home /opt/dagster/home/storage

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The deployment Dagster instance (Postgres from DAGSTER_PG_* env vars) and the sources.
COPY dagster.yaml /opt/dagster/home/dagster.yaml
COPY live_runner ./live_runner
COPY trading_pipeline ./trading_pipeline
COPY config ./config
COPY deploy/runner ./deploy/runner
COPY deploy/dagster ./deploy/dagster
COPY dashboard ./dashboard

USER 10001:10001

# 8080: the runner's ops server (health, ready, metrics, status, control); 4000: the code
# location gRPC server; 3000: the Dagster webserver; 8501: the dashboard.
EXPOSE 8080 4000 3000 8501

# The runner's liveness (GET /health), with the standard library only (no curl in the image).
# Containers that do not run a runner (webserver, daemon, dashboard) override it in compose / k8s.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('TRADING_RUNNER_OPS_PORT', '8080'), timeout=4).status == 200 else 1)"]

# The code location (compose service `code-location`, the chart's user deployment); the other
# processes give their own command (see docker-compose.yml).
CMD ["dagster", "code-server", "start", "-m", "trading_pipeline.definitions", "-h", "0.0.0.0", "-p", "4000"]
