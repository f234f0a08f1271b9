# ActiveSeg as a lab-shared container: gunicorn serves the Dash app, jobs run in
# diskcache background processes (or in a Celery worker with APP_JOB_BACKEND=celery).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    APP_WORKSPACE=/workspace APP_DATA_ROOTS=/data
WORKDIR /srv/activeseg

RUN apt-get update -q && apt-get install -y -q --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
# CPU torch wheel by default; a CUDA base image can swap the index URL.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt
COPY ml ml
COPY app app
COPY layouts layouts
COPY callbacks callbacks

VOLUME ["/workspace", "/data"]
EXPOSE 8050
# One worker process: the Dash background jobs and the compute lock live beside it.
CMD ["gunicorn", "--bind", "0.0.0.0:8050", "--workers", "1", "--threads", "8", "--timeout", "300", "app.wsgi:server"]
