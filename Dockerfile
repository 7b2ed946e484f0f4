# TestON service image. The embedded PostgreSQL is not used here: docker-compose points DB_ADDR at
# the `postgres` service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TESTON_HOME=/var/lib/teston \
    METRICS_HOST=0.0.0.0

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY teston ./teston
COPY ingestion ./ingestion
COPY analytics ./analytics
COPY bot ./bot
COPY migrations ./migrations
RUN pip install ".[bus]" && useradd --system --home-dir /var/lib/teston --create-home teston

USER teston
VOLUME ["/var/lib/teston"]
EXPOSE 9464 9465
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('METRICS_PORT', '9464'), timeout=4)" || exit 1
CMD ["teston", "up"]
