# ActiveSeg image: one image, three roles (docker-compose.yml): web (gunicorn), worker (Celery,
# owns the GPU), and redis (the stock image). Without compose it runs the web role alone, with
# jobs in diskcache background processes beside it.
#
#   docker build -t activeseg .                                   # CPU torch (default)
#   docker build -t activeseg --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .
#
# The CUDA build keeps the same base: torch's CUDA wheels carry the CUDA runtime, the host
# only needs the NVIDIA driver and container toolkit.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    APP_WORKSPACE=/workspace APP_DATA_ROOTS=/data
WORKDIR /srv/activeseg

# libgomp1: torch's OpenMP runtime. Not version-pinned: Debian's security updates should apply.
# hadolint ignore=DL3008
RUN apt-get update -q && apt-get install -y -q --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" -r requirements.txt
COPY ml ml
COPY app app
COPY layouts layouts
COPY callbacks callbacks

RUN useradd --create-home --uid 1000 activeseg \
    && mkdir -p /workspace /data && chown activeseg:activeseg /workspace
USER 1000:1000

VOLUME ["/workspace"]
EXPOSE 8050
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8050/healthz', timeout=4)"]
# Two web processes render slices in parallel (bench.load: 1.4x the requests/s of one on 2 cores); the
# label store and SQLite are multi-process safe, and --preload builds the app once before the fork.
CMD ["gunicorn", "--preload", "--bind", "0.0.0.0:8050", "--workers", "2", "--threads", "8", "--timeout", "300", \
     "app.wsgi:server"]
