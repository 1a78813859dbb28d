# CPU image: the embedded default (no GPU, CPU engine, serve_config.cpu.yaml), for development,
# demos and CI. Build from the repository root:
#
#   docker build -f cluster/docker/cpu.Dockerfile -t pose-pipeline:cpu .
#   docker run --rm -p 8000:8000 -p 8265:8265 --shm-size=2g pose-pipeline:cpu
#
# --shm-size: Ray's object store lives in /dev/shm (Docker's default of 64 MB makes Ray fall back
# to slower disk-backed memory and warn).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    # One container is one local Ray cluster: no Ray token needed inside it (Ray 2.60 enables
    # token authentication by default). Do not publish 8265 beyond localhost without a token.
    RAY_AUTH_MODE=disabled \
    # Serve's control loop and metrics export every second, not every 0.1 s: ~20% of a core
    # saved on a small machine (pose_pipeline/service_cli.py LOCAL_CLUSTER_ENV).
    RAY_SERVE_CONTROL_LOOP_INTERVAL_S=1 \
    RAY_SERVE_METRICS_EXPORT_INTERVAL_MS=1000 \
    POSE_PIPELINE_STORE__ROOT=/data/pose-pipeline

WORKDIR /app

# torch from the PyTorch CPU index first, so that installing the package does not pull the
# CUDA wheels (several GB) from PyPI. FFmpeg comes inside the PyAV wheel: no apt packages.
RUN python -m pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.4,<2.16"

# Dependencies before the source, so that code edits do not reinstall them.
COPY pyproject.toml README.md ./
COPY pose_pipeline ./pose_pipeline
COPY deployments ./deployments
# The postgres extra (psycopg): job records in PostgreSQL when store.database is set.
RUN python -m pip install ".[postgres]"

COPY serve_config.yaml serve_config.cpu.yaml ./

RUN useradd --create-home --uid 1000 pose \
    && mkdir -p /data/pose-pipeline \
    && chown -R pose /data/pose-pipeline /app
USER pose
VOLUME ["/data/pose-pipeline"]

# 8000: the HTTP API. 8265: Ray dashboard. 8080: Prometheus metrics (--metrics-export-port).
EXPOSE 8000 8265 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/-/healthz', timeout=4)"

CMD ["pose-pipeline", "serve"]
