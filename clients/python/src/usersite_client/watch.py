"""``usersite-watch URL [--token KEY]``: print each change to the list as it happens."""

import argparse
import asyncio
import logging
import sys

from .errors import HandshakeError
from .live import LiveUsers
from .userlist import Update

# What a shell expects of a program that Ctrl-C (SIGINT) ended.
INTERRUPTED = 130


def describe(update: Update) -> list[str]:
    """Return the lines that tell what ``update`` did: one per user it changed."""
    if update.snapshot:
        return [
            f"snapshot: {len(update.users)} users (epoch {update.epoch}, version {update.version})"
        ]
    upserted = [
        f"upserted {user['id']}: {user['name']} <{user['email']}>" for user in update.upserted
    ]
    return upserted + [f"deleted {user_id}" for user_id in update.deleted]


async def watch(url: str, token: str | None) -> None:
    async with LiveUsers(url, token) as live:
        async for update in live.updates():
            for line in describe(update):
                print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="usersite-watch", description="Print each change to a usersite server's list of users."
    )
    parser.add_argument("url", help="the socket's URL, e.g. ws://127.0.0.1:8000/api/v1/users/ws")
    parser.add_argument("--token", help="an API token (manage.py apitoken create USERNAME)")
    args = parser.parse_args(argv)
    # Lost connections and reconnections go to stderr, the changes to stdout.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        asyncio.run(watch(args.url, args.token))
    except KeyboardInterrupt:
        return INTERRUPTED
    except HandshakeError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
