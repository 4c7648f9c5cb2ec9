# tag-gateway: slim Python image, non-root, outbox on a volume, config as a mount.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_DB=/data/gateway.db \
    GATEWAY_CONFIG=/app/config.yaml

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install . && useradd --system --uid 10001 --home-dir /app gateway \
    && mkdir -p /data && chown gateway /data
COPY config.yaml ./config.yaml
COPY rules ./rules

USER gateway
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"GATEWAY_PORT\"]}{os.environ.get(\"GATEWAY_PATH_PREFIX\", \"\")}/readyz', timeout=2)" || exit 1
ENTRYPOINT ["tag-gateway"]
CMD ["serve"]
