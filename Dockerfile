# quant_assets: ONE image for every Dagster process (docs/deployment.md).
#
#   code location : dagster code-server start -h 0.0.0.0 -p 4000 -m quant_assets.defs.definitions
#   webserver     : dagster-webserver -h 0.0.0.0 -p 3000 -w /opt/dagster/workspace.yaml
#   daemon        : dagster-daemon run -w /opt/dagster/workspace.yaml
#   each run      : started by the DockerRunLauncher from this same image
#
# docker-compose.yml wires them together. Laptop use without compose (embedded SQLite
# instance and DuckDB, as before):
#   docker build -t quant-assets .
#   docker run --rm -p 127.0.0.1:3000:3000 -v "$PWD/data:/app/data" quant-assets
FROM python:3.11-slim

# Which storage.yaml the image bakes in as configs/storage.yaml: the DuckDB default, or
# deploy/storage.yaml (PostgreSQL) for the production profile. Baked in, not mounted,
# because the run containers the DockerRunLauncher starts get only the image.
ARG STORAGE_PROFILE=configs/storage.yaml

ENV PYTHONDONTWRITEBYTECODE=0 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON=python3.11 \
    QUANT_ASSETS_HOME=/app/data \
    QUANT_ASSETS_CONFIG=/app/configs \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true \
    DAGSTER_EVENT_BATCH_SIZE=1000 \
    OMP_WAIT_POLICY=PASSIVE

WORKDIR /app
RUN pip install --no-cache-dir "uv==0.13.9"
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-install-project
COPY quant_assets ./quant_assets
COPY configs ./configs
COPY ${STORAGE_PROFILE} ./configs/storage.yaml
RUN uv sync --frozen

# The Dagster instance: laptop default (embedded SQLite) unless the production instance
# (deploy/dagster.yaml) is mounted over it by docker-compose.yml. Workspaces for both.
COPY dagster.yaml /opt/dagster/dagster_home/dagster.yaml
COPY workspace.yaml /app/workspace.yaml
COPY deploy/workspace.yaml /opt/dagster/workspace.yaml

# Run as an unprivileged user; it owns only the data directory and the Dagster home.
RUN useradd --create-home --uid 10001 --user-group dagster \
    && mkdir -p /app/data/dagster \
    && chown -R dagster:dagster /app/data /opt/dagster/dagster_home
USER dagster

ENV PATH="/app/.venv/bin:$PATH"
EXPOSE 3000 4000
# Inside a container servers must listen on all interfaces for the port mapping; publish
# them on the host's loopback only (-p 127.0.0.1:3000:3000, see docker-compose.yml).
CMD ["dagster", "dev", "-h", "0.0.0.0", "-p", "3000", "-w", "workspace.yaml"]
