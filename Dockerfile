# hookgate container image: `docker build -t hookgate .` (see docs/deployment.md).
#
# Stage 1 fetches every distribution of requirements.lock, each checked against its hash,
# builds hookgate's own wheel with the locked build backend, and installs hookgate with
# only its runtime dependencies into /opt/hookgate. Stage 2 is that venv on a slim Python,
# run as an unprivileged user with the data in a volume.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements.lock ./
# --require-hashes: a distribution whose hash is not in the lock fails the build.
RUN pip wheel --no-cache-dir --require-hashes --no-deps -r requirements.lock -w /wheels
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# Only locked wheels from /wheels (--no-index); pip picks hookgate's runtime dependencies
# among them, so test and benchmark tools stay out of the image.
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir --no-index --find-links /wheels hatchling \
 && /opt/build/bin/pip wheel --no-cache-dir --no-index --no-deps --no-build-isolation -w /dist . \
 && python -m venv /opt/hookgate \
 && /opt/hookgate/bin/pip install --no-cache-dir --no-index --find-links /wheels /dist/hookgate-*.whl

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="hookgate" \
      org.opencontainers.image.description="Webhook gateway for e-mobility and payment providers" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, unprivileged uid/gid: volume ownership survives image upgrades.
RUN groupadd --system --gid 10001 hookgate \
 && useradd --system --uid 10001 --gid hookgate --home-dir /var/lib/hookgate \
      --shell /usr/sbin/nologin hookgate \
 && mkdir -p /var/lib/hookgate \
 && chown hookgate:hookgate /var/lib/hookgate
COPY --from=build /opt/hookgate /opt/hookgate
ENV PATH=/opt/hookgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOOKGATE_CONFIG=/var/lib/hookgate/hookgate.toml
# The configuration and the SQLite database (hookgate.db, with its -wal and -shm files)
# live here; `hookgate init` writes both into the volume on first use.
VOLUME ["/var/lib/hookgate"]
WORKDIR /var/lib/hookgate
USER 10001:10001
EXPOSE 8000
# 200 when storage answers and the writers run; 503 (a failure here) otherwise.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
# Listen on every interface of the container; the published port decides who reaches it.
CMD ["hookgate", "serve", "--host", "0.0.0.0", "--port", "8000"]
