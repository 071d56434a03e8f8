"""The stack's secrets: generated on the host at first start, kept in a store, handed to each service.

The store is one ``secrets.env`` file (mode 0600): ``<state>/secrets.env`` for the local mode, and the ``secrets``
volume in compose, where the one-shot ``secrets`` service (``python -m deploy.credentials init``) creates it on
the first ``docker compose up`` and copies to each service's own volume only the secrets that service reads, one
file each (read through ``<VARIABLE>_FILE``). Every later start reuses the store.

    python -m deploy.credentials api-key [--store DIR]          the first API key (user dev)
    python -m deploy.credentials rotate NAME [--store DIR]      new value for NAME (the old one becomes NAME_PREVIOUS
                                                                where its receiver accepts two)
    python -m deploy.credentials retire NAME [--store DIR]      drop NAME_PREVIOUS once every sender uses the new one
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import DeployError
from .nats_auth import AUTH_FILE, PASSWORDS, authorization
from .spec import Secrets

FILE_NAME = "secrets.env"
# Where the compose `secrets` service keeps the store (its own volume).
COMPOSE_STORE = "/secrets/store"
DEV_USER = "dev"

GENERATORS: dict[str, Callable[[], str]] = {
    "DEV_API_KEY": lambda: "dev-" + secrets.token_urlsafe(32),
    "REALTIME_SECRET": lambda: secrets.token_urlsafe(32),
    # workers -> main (the report API)
    "REPORT_TOKEN": lambda: secrets.token_urlsafe(32),
    # main -> NATS and communication -> NATS (the event stream), each its own NATS user
    **{name: lambda: secrets.token_urlsafe(32) for name in PASSWORDS},
    # main -> PostgreSQL (the scale shape's task store)
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(32),
    # main's own: the key of the tokens in providers' callback URLs
    "CALLBACK_KEY": lambda: secrets.token_urlsafe(32),
    "S3_ACCESS_KEY": lambda: "platform-" + secrets.token_hex(8),
    "S3_SECRET_KEY": lambda: secrets.token_urlsafe(32),
}
# Credentials whose receiver accepts a previous value while it is rotated.
ROTATABLE = ("REPORT_TOKEN", "CALLBACK_KEY")
# Credentials whose receiver takes one value: rotated by replacing it and restarting the receiver with its senders
# (NATS with main and communication; events wait in main's outbox meanwhile and clients resume with since).
REPLACEABLE = PASSWORDS
# Files made from the stored values for a server that cannot read a secret from a file of its own: NATS's users.
DERIVED: dict[str, Callable[[Secrets], str]] = {AUTH_FILE: lambda found: authorization(found.values)}
# What services may read from the store: main's API key list (the dev key and the operator's), the generated values,
# the previous values of rotated credentials and the derived files.
SERVICE_SECRETS = (
    "API_KEYS",
    *(name for name in GENERATORS if name != "DEV_API_KEY"),
    *(f"{name}_PREVIOUS" for name in ROTATABLE),
    *DERIVED,
)


def generate() -> Secrets:
    return Secrets({name: make() for name, make in GENERATORS.items()})


def _read(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep and value:
            values[key] = value
    return values


def _write(path: Path, values: Mapping[str, str]) -> None:
    lines = ["# Generated on the first start and reused by every later one. Keep it private."]
    lines += [f"{key}={value}" for key, value in values.items()]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    tmp.replace(path)


def load(store: Path) -> Secrets | None:
    """The store's secrets as they are, or None when it holds none yet (nothing is created)."""
    try:
        values = _read(store / FILE_NAME)
    except FileNotFoundError:
        return None
    return Secrets({**generate().values, **values})


def load_or_create(store: Path) -> Secrets:
    """The store's secrets; whatever is missing (all of them on the first start) is generated and saved."""
    store.mkdir(parents=True, exist_ok=True)
    path = store / FILE_NAME
    try:
        values = _read(path)
    except FileNotFoundError:
        values = {}
    missing = [name for name in GENERATORS if not values.get(name)]
    if missing:
        fresh = generate().values
        values.update({name: fresh[name] for name in missing})
        _write(path, values)
    return Secrets(values)


def rotate(store: Path, name: str) -> None:
    if name not in (*ROTATABLE, *REPLACEABLE):
        raise DeployError(f"{name} cannot be rotated by this tool; rotatable: {', '.join((*ROTATABLE, *REPLACEABLE))}")
    values = dict(load_or_create(store).values)
    if name in ROTATABLE:
        values[f"{name}_PREVIOUS"] = values[name]
    values[name] = GENERATORS[name]()
    _write(store / FILE_NAME, values)


def retire(store: Path, name: str) -> bool:
    """Forget ``name``'s previous value; False when there was none."""
    values = dict(load_or_create(store).values)
    if values.pop(f"{name}_PREVIOUS", None) is None:
        return False
    _write(store / FILE_NAME, values)
    return True


SECRETS_DIR = "/run/secrets"


def secret_file(name: str) -> str:
    """Where a container finds the secret ``name`` (a store name such as REPORT_TOKEN, or API_KEYS)."""
    return f"{SECRETS_DIR}/{name.lower()}"


def write_service_files(found: Secrets, directory: Path, owner: int, names: Sequence[str]) -> None:
    """A service's secrets as files in its own volume (and nothing else: files it no longer reads are removed).
    A previous value that is not set (no rotation under way) has no file; the service reads that as unset."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {
        Path(secret_file(name)).name: DERIVED[name](found) if name in DERIVED else found.get(name) for name in names
    }
    for existing in directory.iterdir():
        if wanted.get(existing.name) is None:
            existing.unlink()
    for name, value in wanted.items():
        if value is None:
            continue
        path = directory / name
        tmp = directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
        with os.fdopen(fd, "w") as out:
            out.write(value)
        os.chown(tmp, owner, owner)
        tmp.replace(path)


def _store(value: str | None) -> Path:
    return Path(value or os.environ.get("SECRETS_STORE") or COMPOSE_STORE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.credentials", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help=f"directory of {FILE_NAME} (default $SECRETS_STORE or {COMPOSE_STORE})")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create the store if needed and write each service's secret files")
    init.add_argument(
        "--service",
        nargs=3,
        action="append",
        default=[],
        metavar=("DIR", "UID", "SECRETS"),
        help="a service's volume, the user id that reads it, and the comma-separated names of its secrets",
    )
    sub.add_parser("api-key", help=f"print the first API key (user {DEV_USER})")
    sub.add_parser("rotate", help="rotate a credential").add_argument("name", choices=(*ROTATABLE, *REPLACEABLE))
    sub.add_parser("retire", help="retire a rotated credential's previous value").add_argument(
        "name", choices=ROTATABLE
    )
    args = parser.parse_args(argv)
    store = _store(args.store)
    try:
        if args.command == "init":
            # API keys of further users come from the operator (API_KEYS), next to the generated dev key.
            found = dataclasses.replace(load_or_create(store), extra_api_keys=os.environ.get("API_KEYS", ""))
            for directory, uid, names in args.service:
                write_service_files(found, Path(directory), int(uid), [n for n in names.split(",") if n])
            print(f"secrets ready for {len(args.service)} service(s)")
        elif args.command == "api-key":
            print(load_or_create(store).dev_api_key)
        elif args.command == "rotate":
            rotate(store, args.name)
            if args.name in ROTATABLE:
                print(f"{args.name} rotated; the old value stays accepted as {args.name}_PREVIOUS until `retire`")
            else:
                print(f"{args.name} replaced; restart NATS and the services that connect to it together")
        else:
            print(f"{args.name}_PREVIOUS {'retired' if retire(store, args.name) else 'was not set'}")
    except (DeployError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
