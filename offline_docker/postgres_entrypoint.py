#!/usr/bin/env python3
"""The start of the official postgres image, for the offline stand-in: on the first start (no PG_VERSION in
PGDATA) `initdb` with the superuser POSTGRES_USER (default postgres) and the password from POSTGRES_PASSWORD or the
file POSTGRES_PASSWORD_FILE names, scram-sha-256 for every client, then the database POSTGRES_DB (default: the
user's name); then the server in the foreground, listening on every address. Another command runs as given."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def password() -> str | None:
    path = os.environ.get("POSTGRES_PASSWORD_FILE")
    if path:
        return Path(path).read_text().strip() or None
    return os.environ.get("POSTGRES_PASSWORD") or None


def initialize(data: Path, user: str, database: str) -> None:
    secret = password()
    if secret is None:
        sys.exit("error: POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE is required to create the database")
    with tempfile.NamedTemporaryFile("w", prefix="pwfile-") as pwfile:
        pwfile.write(secret)
        pwfile.flush()
        initdb = ["initdb", "-D", str(data), "-U", user, "--auth=scram-sha-256", f"--pwfile={pwfile.name}"]
        subprocess.run([*initdb, "-E", "UTF8", "--locale=C", "--no-instructions"], check=True)
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write("host all all all scram-sha-256\n")
    if database != "postgres":
        statement = 'CREATE DATABASE "{}";\n'.format(database.replace('"', '""'))
        subprocess.run(["postgres", "--single", "-D", str(data), "postgres"], input=statement, text=True, check=True)


def main(argv: list[str]) -> None:
    if argv[1:2] != ["postgres"]:
        os.execvp(argv[1], argv[1:])  # noqa: S606 - the command the container was given
    data = Path(os.environ.get("PGDATA", "/var/lib/postgresql/data"))
    user = os.environ.get("POSTGRES_USER", "postgres")
    if not (data / "PG_VERSION").exists():
        initialize(data, user, os.environ.get("POSTGRES_DB", user))
    os.execvp("postgres", ["postgres", "-D", str(data), "-c", "listen_addresses=*", *argv[2:]])  # noqa: S606


if __name__ == "__main__":
    main(sys.argv)
