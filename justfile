# Recipes run inside .venv; start them through ./dev (e.g. `./dev up`), which installs everything first.
set shell := ["bash", "-euo", "pipefail", "-c"]
# Arguments reach each command as "$@", one word each, quoted as given (`./dev test -m "not docker"`).
set positional-arguments
export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

# list the recipes
default:
    @just --list

# bring the stack up (Docker when an engine and the images are there, otherwise local processes)
up *ARGS:
    deploy-tool up "$@"

# stop the stack
down *ARGS:
    deploy-tool down "$@"

# the first API key (user dev) of the stack, in either mode
api-key *ARGS:
    deploy-tool api-key {{ARGS}}

# each component and its health
status *ARGS:
    deploy-tool status "$@"

# logs of one component, or all
logs *ARGS:
    deploy-tool logs "$@"

# hosts without a registry: build or reuse every image locally (ARGS: --start-engine --rebuild --wheelhouse-only)
images *ARGS:
    python -m offline_docker images "$@"

# lint, strict type check, compose.yaml freshness, then every test
test *ARGS: check
    pytest "$@"

# ruff, ruff format, mypy --strict, and `deploy-tool render --check`
check:
    ruff check .
    ruff format --check .
    mypy
    deploy-tool render --check

# a new integration from a template: PATTERN is sync-call or submit-poll (ARGS: --folder F --queue Q --description D)
scaffold NAME PATTERN *ARGS:
    deploy-tool scaffold "$1" --pattern "$2" "${@:3}"

# benchmarks: numbers and ratios side by side from one run (NAMES: default all)
bench *NAMES:
    python -m benchmarks "$@"

# re-record the workflow histories the replay test replays (ARGS: --keep NAME, <integration>/<path> ...)
record-histories *ARGS:
    python -m tests.histories.record "$@"
