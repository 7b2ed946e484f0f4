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
# Checks what this container runs under its settings (TESTON_ROLES, INGEST_ENABLED, BUS_URL, the metrics
# ports): the database, and the ingester's or the sink's /healthz only where one is served.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["teston", "health"]
CMD ["teston", "up"]
