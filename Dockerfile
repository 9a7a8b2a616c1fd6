# elog-stream service image: a wheel built in one stage, installed in a clean one, run as a
# non-root user. Deployment with Redis and a reverse proxy: docker-compose.yml and
# docs/deployment.md.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY elog_stream ./elog_stream
COPY web ./web
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# matplotlib (imported by the service) wants a writable config directory; the user has no home.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 elog \
    && useradd --system --uid 10001 --gid elog --no-create-home --shell /usr/sbin/nologin elog
USER 10001:10001
EXPOSE 8000
# slim has no curl. urlopen raises on a 503, so the check fails while Redis is unreachable or
# the update subscription is not proven (see /healthz in docs/protocol.md). It assumes port 8000.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["elog-stream", "serve", "--host", "0.0.0.0"]
CMD ["--port", "8000"]
