"""
The threads that run the sockets' database work.

Under ASGI every ``database_sync_to_async`` call of a process runs on
asgiref's one thread: a socket's write waited for the relay's read of the
list, and the reverse. Here the relay's reads (one at a time per process,
users.relay) have a thread of their own, and socket writes a few threads
where the database takes concurrent writers (PostgreSQL); on SQLite, which
takes one writer at a time, writes stay on asgiref's thread. Like channels'
calls, each closes its database connection before and after (with
``CONN_MAX_AGE=0`` it is closed; PostgreSQL's pool takes it back).
"""

import functools
from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from django.db import connection

WRITE_THREADS = 4  # per process; each holds a pooled connection only while it writes


@functools.cache
def _executor(name: str, threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"users-{name}")


def reading(function):
    """``function`` as a coroutine function that runs on the reads' thread."""
    return database_sync_to_async(function, thread_sensitive=False, executor=_executor("read", 1))


def writing(function):
    """``function`` as a coroutine function that runs on a thread for socket writes."""
    if connection.vendor == "sqlite":
        return database_sync_to_async(function)
    executor = _executor("write", WRITE_THREADS)
    return database_sync_to_async(function, thread_sensitive=False, executor=executor)
