# quant_assets: one image for the Dagster code location, webserver and daemon.
#   docker build -t quant-assets .
#   docker run --rm -p 127.0.0.1:3000:3000 -v "$PWD/data:/app/data" quant-assets
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=0 \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON=python3.11 \
    QUANT_ASSETS_HOME=/app/data \
    QUANT_ASSETS_CONFIG=/app/configs \
    DAGSTER_HOME=/app/data/dagster \
    DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true

WORKDIR /app
RUN pip install --no-cache-dir "uv==0.13.9"
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-install-project
COPY quant_assets ./quant_assets
COPY configs ./configs
COPY workspace.yaml dagster.yaml ./
RUN uv sync --frozen && mkdir -p /app/data/dagster && cp dagster.yaml /app/data/dagster/

ENV PATH="/app/.venv/bin:$PATH"
EXPOSE 3000
# Inside the container the webserver must listen on all interfaces for the port mapping;
# publish it on the host's loopback only (-p 127.0.0.1:3000:3000).
CMD ["dagster", "dev", "-h", "0.0.0.0", "-p", "3000", "-w", "workspace.yaml"]
