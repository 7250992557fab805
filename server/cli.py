"""The ``execstream`` command: serve, run a file, manage users, upgrade the database."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from server.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="execstream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the server (settings from EXECSTREAM_*)")
    serve.add_argument("--host", help="overrides EXECSTREAM_HOST")
    serve.add_argument("--port", type=int, help="overrides EXECSTREAM_PORT")

    run = commands.add_parser("run", help="run a file on a server, interactively")
    if _wants("run", argv):
        from client import terminal

        terminal.add_arguments(run)

    users = commands.add_parser("users", help="manage accounts")
    user_commands = users.add_subparsers(dest="action", required=True)
    create = user_commands.add_parser("create", help="create an account")
    create.add_argument("name")
    create.add_argument(
        "--admin", action="store_true", help="an admin: may warm the pool and read statistics"
    )
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )

    db = commands.add_parser("db", help="manage the database")
    db_commands = db.add_subparsers(dest="action", required=True)
    db_commands.add_parser(
        "upgrade", help="bring the schema to the newest version (serve also does it at start)"
    )

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "db":
        return asyncio.run(_upgrade_database())
    if args.command == "run":
        from client import terminal

        return asyncio.run(terminal.run_file(args))
    return asyncio.run(_create_user(args))


def _wants(command: str, argv: list[str] | None) -> bool:
    """Whether ``command`` is the one asked for: its imports are loaded only then."""
    words = sys.argv[1:] if argv is None else argv
    return command in words[:1] or not words or words[0].startswith("-")


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from server.config import explain
    from server.serve import serve

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"execstream: {explain(exc)}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


async def _upgrade_database() -> int:
    from storage import Database

    db = Database(Settings().db_url)
    await db.open()  # opening upgrades
    try:
        print(f"database is at revision {await db.revision()}")
    finally:
        await db.close()
    return 0


async def _create_user(args: argparse.Namespace) -> int:
    from server.accounts import Credentials, create_account
    from server.errors import ApiError
    from server.http import validate
    from storage import Database
    from storage.models import ADMIN, USER

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = os.environ.get("EXECSTREAM_PASSWORD") or getpass.getpass("Password: ")
    db = Database(Settings().db_url)
    await db.open()
    try:
        credentials = validate(Credentials, {"username": args.name, "password": password})
        account = await create_account(db, credentials, role=ADMIN if args.admin else USER)
    except ApiError as exc:
        print(f"execstream: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    print(f"created {account.role} {account.username!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
