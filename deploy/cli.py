"""``deploy-tool``: manage the middleware catalog, render compose.yaml, and run the stack (docker or local)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import catalog, compose, config, paths, scaffold
from .docker import DockerStack, choose_mode
from .errors import DeployError, UsageError
from .local import STACK_FILE, ComponentStatus, LocalStack
from .ports import Ports, parse_port_overrides
from .spec import SHAPES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploy-tool",
        description="Deploy the async task platform: middleware catalog, compose.yaml, and the stack itself.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    files = argparse.ArgumentParser(add_help=False)
    files.add_argument("--config", type=Path, default=paths.CONFIG_FILE, help="enabled-middleware file")
    files.add_argument("--compose-file", type=Path, default=paths.COMPOSE_FILE, help="generated compose file")

    run = argparse.ArgumentParser(add_help=False, parents=[files])
    run.add_argument(
        "--mode",
        choices=("auto", "docker", "local"),
        default="auto",
        help="auto: docker when an engine answers and every image exists locally, else local (default)",
    )
    run.add_argument("--state-dir", help=f"state directory (default ${paths.STATE_DIR_ENV} or .deploy/local)")
    run.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME=NUMBER",
        help="override a port, e.g. --port temporal=17233 (repeatable)",
    )

    mw = sub.add_parser("middleware", help="list, enable or disable catalog middleware", parents=[files])
    mw_sub = mw.add_subparsers(dest="action", required=True, metavar="ACTION")
    mw_sub.add_parser("list", help="catalog entries and whether each is enabled")
    mw_sub.add_parser("add", help="enable a middleware (idempotent)").add_argument("name")
    mw_sub.add_parser("remove", help="disable a middleware (idempotent)").add_argument("name")

    render = sub.add_parser(
        "render", help="write compose.yaml from the enabled middleware and services", parents=[files]
    )
    render.add_argument("--check", action="store_true", help="exit 1 and show the difference when it is stale")

    up = sub.add_parser("up", help="start the stack and wait until it is ready", parents=[run])
    up.add_argument(
        "--only",
        action="append",
        metavar="COMPONENT",
        help="local mode: start only these (names or middleware|services|workers; repeatable)",
    )
    up.add_argument("--free-ports", action="store_true", help="local mode: pick free ports instead of the defaults")
    up.add_argument(
        "--shape",
        choices=SHAPES,
        help="local mode: single (default) or scale: PostgreSQL from the host's binaries, and main and communication "
        "as two replicas each",
    )
    sub.add_parser("down", help="stop the stack; no process, port or lock is left", parents=[run])
    sub.add_parser("api-key", help="print the first API key (user dev) of the stack", parents=[run])
    status = sub.add_parser("status", help="each component and its health; exit 1 if any is unhealthy", parents=[run])
    status.add_argument("--only", action="append", metavar="COMPONENT", help="local mode: only these components")
    logs = sub.add_parser("logs", help="show the logs of one component or of all", parents=[run])
    logs.add_argument("component", nargs="?")
    logs.add_argument("-n", "--lines", type=int, default=100, help="lines from the end (default 100)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")

    new = sub.add_parser(
        "scaffold",
        help="create a new integration (code, manifest, tests) from a pattern template; never overwrites",
        description=(
            "Creates integrations/<folder>/ and its tests from deploy/scaffold_templates/<pattern>/: sync-call (one "
            "slow provider call in an activity) or submit-poll (submit, then poll with backoff in the workflow)."
        ),
    )
    new.add_argument("name", help="the name users see in URLs (manifest name), e.g. acme-image or acmeVideo")
    new.add_argument("--pattern", required=True, choices=scaffold.PATTERNS, help="how the provider's API works")
    new.add_argument("--folder", help="folder under integrations/ (default: snake_case of the name)")
    new.add_argument("--queue", help="Temporal task queue (default: the name)")
    new.add_argument("--description", help="manifest description (default: one line naming the pattern)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "middleware":
        return _middleware(args)
    if args.command == "render":
        return _render(args)
    if args.command == "scaffold":
        return _scaffold(args)
    return _run(args)


def _middleware(args: argparse.Namespace) -> int:
    path: Path = args.config
    if args.action == "list":
        enabled = set(config.load(path).enabled)
        width = max(len(name) for name in catalog.CATALOG)
        print(f"{'NAME':<{width}}  ENABLED  DESCRIPTION")
        for name, entry in catalog.CATALOG.items():
            print(f"{name:<{width}}  {'yes' if name in enabled else 'no':<7}  {entry.summary}")
        return 0
    if args.action == "add":
        changed = config.add(args.name, path)
        print(f"{args.name}: {'enabled' if changed else 'already enabled'} in {path.name}")
    else:
        changed = config.remove(args.name, path)
        print(f"{args.name}: {'disabled' if changed else 'was not enabled'} in {path.name}")
    if changed:
        print("now run `deploy-tool render` to update compose.yaml")
    return 0


def _render(args: argparse.Namespace) -> int:
    target: Path = args.compose_file
    if args.check:
        diff = compose.check(target, args.config)
        if diff is None:
            print(f"{target.name} is current")
            return 0
        print(diff, end="" if diff.endswith("\n") else "\n")
        print(f"{target.name} is stale: run `deploy-tool render` and commit the result", file=sys.stderr)
        return 1
    changed = compose.write(target, args.config)
    names = f"{target.name} and {compose.dev_file(target).name}"
    print(f"wrote {names}" if changed else f"{names} are current")
    return 0


def _scaffold(args: argparse.Namespace) -> int:
    names = scaffold.names_for(args.name, args.pattern, args.folder, args.queue, args.description)
    for path in scaffold.scaffold(names):
        print(f"created {path.relative_to(paths.REPO_ROOT)}")
    print("\n".join(scaffold.next_steps(names)))
    return 0


def _recorded_mode(state_dir: Path) -> str | None:
    try:
        data = json.loads((state_dir / STACK_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    mode = data.get("mode") if isinstance(data, dict) else None
    return mode if mode in ("docker", "local") else None


def _mode(args: argparse.Namespace, state_dir: Path) -> str:
    # `api-key` prints the key alone on stdout, for KEY=$(deploy-tool api-key).
    out = sys.stderr if args.command == "api-key" else sys.stdout
    if args.mode == "auto" and args.command != "up":
        recorded = _recorded_mode(state_dir)
        if recorded is not None:
            print(f"mode: {recorded} (used by the last `up` in {state_dir})", file=out)
            return recorded
    mode, reason = choose_mode(args.mode, args.compose_file, os.environ)
    print(f"mode: {mode} ({reason})", file=out)
    return mode


def _run(args: argparse.Namespace) -> int:
    state_dir = paths.state_dir(args.state_dir)
    overrides = parse_port_overrides(args.port)
    mode = _mode(args, state_dir)
    only: list[str] | None = getattr(args, "only", None)
    if mode == "docker":
        if only:
            raise UsageError("--only works in local mode; in docker mode use `docker compose up SERVICE`")
        if getattr(args, "shape", None):
            raise UsageError("--shape works in local mode; in docker mode use compose's scale profile")
        recorded = _recorded_mode(state_dir)
        if args.command == "up" and recorded == "local":
            raise DeployError(f"a local stack runs from {state_dir}; run `deploy-tool down` first")
        return _stack_command(
            args, DockerStack(state_dir, overrides, compose_file=args.compose_file, config_path=args.config)
        )

    ports: Ports | None = None
    if getattr(args, "free_ports", False):
        ports = Ports.free().replace(**overrides)
    elif overrides:
        ports = Ports().replace(**overrides)
    if args.command == "up" and _recorded_mode(state_dir) == "docker":
        raise DeployError(f"a docker stack was started from {state_dir}; run `deploy-tool down` first")
    stack = LocalStack(state_dir, ports, only, config_path=args.config, shape=getattr(args, "shape", None))
    return _stack_command(args, stack)


def _stack_command(args: argparse.Namespace, stack: LocalStack | DockerStack) -> int:
    """``up``, ``down``, ``status`` and ``logs`` are the same in both modes; only reading logs differs."""
    if args.command == "up":
        stack.up()
        print("\n".join(stack.summary()))
        return 0
    if args.command == "down":
        stack.down()
        return 0
    if args.command == "status":
        return _print_status(stack.status())
    if args.command == "api-key":
        print(stack.api_key())
        return 0
    if isinstance(stack, DockerStack):
        return stack.logs(args.component, args.lines, args.follow)
    return _local_logs(stack, args.component, args.lines, args.follow)


def _print_status(statuses: list[ComponentStatus]) -> int:
    if not statuses:
        print("no components selected")
        return 1
    width = max(12, *(len(s.name) for s in statuses))
    print(f"{'COMPONENT':<{width}}  {'STATE':<8}  {'HEALTH':<9}  DETAIL")
    for s in statuses:
        health = "-" if s.state == "skipped" else ("healthy" if s.healthy else "unhealthy")
        pid = f" (pid {s.pid})" if s.pid else ""
        print(f"{s.name:<{width}}  {s.state:<8}  {health:<9}  {s.detail}{pid}")
    bad = [s.name for s in statuses if not s.ok]
    if bad:
        print(f"unhealthy: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def _local_logs(stack: LocalStack, component: str | None, lines: int, follow: bool) -> int:
    available = stack.log_components()
    if component is not None and component not in available:
        known = ", ".join(available) or "none yet"
        raise UsageError(f"no log for {component!r} in {stack.log_dir}; components with logs: {known}")
    names = [component] if component else available
    if not names:
        print(f"no logs in {stack.log_dir}")
        return 0
    for name in names:
        if len(names) > 1:
            print(f"==> {name} <==")
        print(stack.tail(name, lines))
    if follow:
        _follow([stack.log_path(n) for n in names], prefix=len(names) > 1)
    return 0


def _follow(files: list[Path], prefix: bool) -> None:
    offsets = {f: f.stat().st_size if f.exists() else 0 for f in files}
    try:
        while True:
            for f in files:
                if not f.exists():
                    continue
                size = f.stat().st_size
                if size < offsets[f]:
                    offsets[f] = 0
                if size > offsets[f]:
                    with f.open("rb") as handle:
                        handle.seek(offsets[f])
                        chunk = handle.read().decode(errors="replace")
                        offsets[f] = handle.tell()
                    for line in chunk.splitlines():
                        print(f"{f.stem} | {line}" if prefix else line, flush=True)
            # Polling a log file for new lines, not waiting on anything.
            time.sleep(0.5)
    except KeyboardInterrupt:
        return


if __name__ == "__main__":
    sys.exit(main())
