# One image for the web app, the workers and the migrations (docker-compose.yml picks the command).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HAR_DATA_DIR=/data \
    HAR_STORAGE_DIR=/data/storage \
    REMAP_SIGTERM=SIGQUIT
# REMAP_SIGTERM: `docker stop` (SIGTERM) makes a Celery worker hand its running task back to the queue after
# HAR_WORKER_SHUTDOWN_GRACE_S instead of finishing it first (worker/celery_app.py); gunicorn ignores it

# libglib2.0-0: needed by OpenCV's video I/O
# ffmpeg: encodes the annotated video as H.264 .mp4 (worker/annotate.py; without it: OpenCV VP8 .webm, slower)
RUN apt-get update \
 && apt-get install -y --no-install-recommends libglib2.0-0 ffmpeg \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY alembic.ini ./
COPY migrations/ migrations/
COPY har/ har/
COPY models/ models/
COPY worker/ worker/
COPY web/ web/

# /proxy-conf: docker-compose.yml's proxy-config service writes the reverse proxy's configuration there (a volume that
# the nginx container reads; a new volume takes this directory's owner)
RUN useradd --create-home --uid 1000 har \
 && mkdir -p /data/storage /proxy-conf \
 && chown -R har:har /data /proxy-conf
USER har
VOLUME ["/data"]
EXPOSE 8000

CMD ["gunicorn", "web:create_app()", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", \
     "--timeout", "300", "--access-logfile", "-"]
