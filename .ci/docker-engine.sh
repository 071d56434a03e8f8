#!/bin/sh
# Docker for CI and offline hosts; the work is done by offline_docker (python -m offline_docker).
#
#   .ci/docker-engine.sh start    engine answering (installs docker.io and starts dockerd if needed) + compose v2
#   .ci/docker-engine.sh images   build or reuse the stack's images; writes .deploy/images.env
#   .ci/docker-engine.sh status   exit 0 when an engine answers
#   .ci/docker-engine.sh stop     stop the engine `start` recorded as started (if any) and clean up the host
#
# CI order: start -> images -> tests -> stop (`.ci/run` stops only an engine that did not answer before it started).
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"

case "${1:-}" in
    start | images | status | stop)
        exec "$PYTHON" -m offline_docker "$@"
        ;;
    *)
        echo "usage: $0 start|images [--rebuild]|status|stop [--purge]" >&2
        exit 2
        ;;
esac
