# The application image: one image, every service chosen by its command
#   python -m services.main | services.communication | services.simulator | services.async_task <integration>
#
# Build from the repository root after `./dev images --wheelhouse-only` (or `./dev images`, which also builds this
# image) filled build/wheelhouse: nothing is downloaded during the build, so it works offline and never needs the
# host's CA certificates. Only classic-builder syntax (no BuildKit features): these hosts have no buildx.
#
#   docker build -f docker/app.Dockerfile -t async-task-platform:dev .
#   docker build -f docker/app.Dockerfile --build-arg PYTHON_BASE_IMAGE=local/python-base:3.11-bookworm ...
ARG PYTHON_BASE_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
# Dependencies first, in their own layer: source changes do not reinstall them. The requirements list is the
# locked runtime closure (from uv.lock; no development dependencies) with a sha256 per wheel.
COPY build/wheelhouse/ /wheels/
# Bytecode is compiled in parallel afterwards (pip compiles serially: about 30 s slower on two cores); the venv
# is read-only for the service user, so it must be compiled at build time. Like pip, a file that does not
# compile (some packages ship such test data) is not an error.
RUN /opt/venv/bin/pip install --no-index --find-links /wheels --require-hashes --no-compile \
        -r /wheels/requirements.txt \
    && (/opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib > /dev/null || true)

FROM ${PYTHON_BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# /data is the service user's writable state directory (main's SQLite task store); a fresh named volume mounted
# there takes its ownership from the image.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown app:app /data
COPY --from=builder /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/bin/healthcheck
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY deploy/ deploy/
COPY integrations/ integrations/
COPY services/ services/
# The source is read-only for the service user, so compile it now rather than on every start.
RUN chmod 0755 /usr/local/bin/healthcheck && python -m compileall -q /app
USER app
# Services stop cleanly on SIGTERM; compose also sets `init: true` so signals reach them and zombies are reaped.
STOPSIGNAL SIGTERM
EXPOSE 8000 8001
# Health: services answer GET /healthz, e.g. `healthcheck http://127.0.0.1:8000/healthz` (compose defines it).
CMD ["python", "-m", "services.main"]
