#!/bin/sh
# Docker for CI and offline hosts; the work is done by deploy/docker_engine.py and deploy/images.py.
#
#   .ci/docker-engine.sh start    engine answering (installs docker.io and starts dockerd if needed) + compose v2
#   .ci/docker-engine.sh images   build or reuse the stack's images; writes .deploy/images.env
#   .ci/docker-engine.sh status   exit 0 when an engine answers
#   .ci/docker-engine.sh stop     stop the engine `start` started (if it did) and clean up the host
#
# CI order: start -> images -> tests -> stop (run `stop` even when the tests fail).
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"

case "${1:-}" in
    start)
        "$PYTHON" -m deploy.docker_engine start
        "$PYTHON" -m deploy.docker_engine compose
        ;;
    images)
        shift
        "$PYTHON" -m deploy.images "$@"
        ;;
    status)
        "$PYTHON" -m deploy.docker_engine status
        ;;
    stop)
        shift
        "$PYTHON" -m deploy.docker_engine stop "$@"
        ;;
    *)
        echo "usage: $0 start|images [--rebuild]|status|stop [--purge]" >&2
        exit 2
        ;;
esac
