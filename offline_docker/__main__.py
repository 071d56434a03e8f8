"""`python -m offline_docker start|stop|status|images`: the commands `.ci/docker-engine.sh` and `./dev images` run."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from deploy.docker import engine_version
from deploy.paths import IMAGES_ENV_NAME

from .compose_plugin import find_compose
from .engine import ensure_engine, load_handle, recorded_engine_runs, stop_engine
from .host import HostError, say
from .images import IMAGE_VARIABLES, bootstrap_images
from .wheelhouse import build_wheelhouse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m offline_docker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "start", help="make an engine answer (installs docker.io and starts dockerd if needed; root) and compose v2"
    )
    stop = commands.add_parser("stop", help="stop the engine that `start` recorded, and clean up the host")
    stop.add_argument("--purge", action="store_true", help="also delete its data root (all images)")
    commands.add_parser("status", help="exit 0 when an engine answers; says whether `start` started it")
    images = commands.add_parser(
        "images",
        help=f"build or reuse every image of the stack; writes {IMAGES_ENV_NAME}",
        description=(
            "Builds the Python base (debootstrap), the application image, and stand-ins for the Temporal and MinIO "
            "images, reusing every image whose inputs did not change. `deploy-tool up --mode docker|auto` then uses "
            f"them; plain compose: `docker compose --env-file {IMAGES_ENV_NAME} up -d`."
        ),
    )
    images.add_argument("--rebuild", action="store_true", help="rebuild every image even when it is current")
    images.add_argument("--start-engine", action="store_true", help="run `start` first when no engine answers")
    images.add_argument(
        "--wheelhouse-only",
        action="store_true",
        help="only download the locked wheels into build/wheelhouse (what `docker compose build` needs online)",
    )
    return parser


def _start() -> None:
    handle = ensure_engine()
    print(f"DOCKER_HOST={handle.docker_host}")
    print(f"compose: {shlex.join(find_compose())}")


def _images(args: argparse.Namespace) -> None:
    if args.wheelhouse_only:
        build_wheelhouse(say, rebuild=args.rebuild)
        return
    if args.start_engine:
        _start()
    built = bootstrap_images(say, rebuild=args.rebuild)
    for key in IMAGE_VARIABLES:
        print(f"{key}={built[key]}")
    print(f"next: `deploy-tool up` (reads {IMAGES_ENV_NAME}) or `docker compose --env-file {IMAGES_ENV_NAME} up -d`")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "start":
            _start()
        elif args.command == "stop":
            recorded = load_handle()
            if recorded is None:
                say("no engine started by `start` is recorded; nothing to stop")
            else:
                stop_engine(recorded, purge=args.purge)
        elif args.command == "status":
            version = engine_version()
            started = "yes" if recorded_engine_runs() else "no"
            print(f"engine: {version or 'not answering'}; started by `start`: {started}")
            return 0 if version else 1
        else:
            _images(args)
    except HostError as exc:
        say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
