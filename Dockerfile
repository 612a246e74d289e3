FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 10001 aclaudit
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY policies ./policies
# The example activity store (docker-compose service `activity-store`): python -m examples.activity_store
COPY examples ./examples
RUN pip install -e . && chown -R aclaudit /app && mkdir /data && chown aclaudit /data

# Without ACLAUDIT_DATABASE_URL the service keeps its SQLite file (the access log: evidence) in
# a volume, not in the container's writable layer, which a re-created container loses.
VOLUME /data
ENV ACLAUDIT_DATABASE_URL=sqlite:////data/aclaudit.db

USER aclaudit
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
# `aclaudit serve` applies pending migrations, then serves.
CMD ["aclaudit", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
