"""
``usersite-watch URL [--token KEY] [--search TEXT] [--order ORDER] [--limit N] [--offset N]``.

Without a query it prints each change to the list as it happens; with one, the
window and how many users match, each time they change.
"""

import argparse
import asyncio
import logging
import sys
from dataclasses import asdict

from .errors import HandshakeError, InvalidQueryError
from .live import LiveUsers
from .query import ORDERS, WHOLE_LIST, Query
from .userlist import Update, Users

# What a shell expects of a program that Ctrl-C (SIGINT) ended.
INTERRUPTED = 130


def describe(update: Update) -> list[str]:
    """Return the lines that tell what ``update`` did: one per user it changed."""
    if update.snapshot:
        return [
            f"snapshot: {len(update.users)} users (epoch {update.epoch}, version {update.version})"
        ]
    upserted = [f"upserted {_user_line(user)}" for user in update.upserted]
    return upserted + [f"deleted {user_id}" for user_id in update.deleted]


def describe_window(users: Users, offset: int) -> list[str]:
    """Return the lines that show a window: how many users match, then each user shown."""
    header = f"{users.total} users match, {len(users)} shown from place {offset + 1}:"
    return [header] + [f"  {_user_line(user)}" for user in users.values()]


def _user_line(user: dict[str, str]) -> str:
    return f"{user['id']}: {user['name']} <{user['email']}>"


async def watch(url: str, token: str | None, query: Query) -> None:
    async with LiveUsers(url, token, **asdict(query)) as live:
        if query == WHOLE_LIST:
            async for update in live.updates():
                _print(describe(update))
        else:
            # A window is shown whole each time; one that a newer replaced is not worth showing.
            async for users in live:
                _print(describe_window(users, query.offset))


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="usersite-watch",
        description="Print each change to a usersite server's list of users, or to a window of it.",
    )
    parser.add_argument("url", help="the socket's URL, e.g. ws://127.0.0.1:8000/api/v1/users/ws")
    parser.add_argument("--token", help="an API token (manage.py apitoken create USERNAME)")
    window = parser.add_argument_group("a live query: print the window each time it changes")
    window.add_argument("--search", default="", help="users whose name or email contain TEXT")
    window.add_argument("--order", default="id", choices=ORDERS, help="default: id")
    window.add_argument("--limit", type=int, help="the window's size, 1 to 500")
    window.add_argument("--offset", type=int, default=0, help="the window's first place, from 0")
    args = parser.parse_args(argv)
    try:
        query = Query(args.search, args.order, args.limit, args.offset)
    except InvalidQueryError as error:
        parser.error(str(error))
    # Lost connections and reconnections go to stderr, the changes to stdout.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        asyncio.run(watch(args.url, args.token, query))
    except KeyboardInterrupt:
        return INTERRUPTED
    except (HandshakeError, InvalidQueryError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
