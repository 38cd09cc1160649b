"""
The project with counters, for ``bench/fanout.py --count``: what changes cost a server process.

The project's own application, wrapped from outside as the unit tests'
monkeypatching does (nothing in users/ knows of it), counting in this process:

  reads          list reads (users.live.snapshots.read), each one transaction;
  read_queries   the SQL statements those reads ran;
  queries        every SQL statement the process ran (writes, REST, the
                 relay's version checks, reads);
  encodings      JSON encodings of a list or frame (users.live.snapshots.dump);
  offers         frames offered to sockets (LiveListConsumer.offer);
  publishes      announcements of a new version to the group (users.live.publisher).

``GET /bench/counts`` answers them as a JSON object.
"""

import json
import threading
from collections import Counter

from usersite.asgi import application as project  # first: it sets Django up

# isort: split
from django.db.backends.signals import connection_created

from users.live import publisher, snapshots
from users.sockets.consumers import LiveListConsumer

COUNTS = Counter()
_reading = threading.local()


def count_query(execute, sql, params, many, context):
    COUNTS["queries"] += 1
    if getattr(_reading, "active", False):
        COUNTS["read_queries"] += 1
    return execute(sql, params, many, context)


def watch_connection(sender, connection, **kwargs):
    # A thread's connection wrapper outlives its database connections: add once.
    if count_query not in connection.execute_wrappers:
        connection.execute_wrappers.append(count_query)


connection_created.connect(watch_connection, dispatch_uid="bench-counted-queries")


def counted(name: str, function):
    def wrapper(*args, **kwargs):
        COUNTS[name] += 1
        return function(*args, **kwargs)

    return wrapper


def counted_read(*args, **kwargs):
    COUNTS["reads"] += 1
    _reading.active = True
    try:
        return read(*args, **kwargs)
    finally:
        _reading.active = False


read = snapshots.read
snapshots.read = counted_read  # users.live.fanout looks it up at every refresh
snapshots.dump = counted("encodings", snapshots.dump)  # looked up at every encoding
LiveListConsumer.offer = counted("offers", LiveListConsumer.offer)
# Looked up by the publisher at every publish.
publish_now = publisher.publish_now


async def counted_publish_now(epoch, version):
    COUNTS["publishes"] += 1
    await publish_now(epoch, version)


publisher.publish_now = counted_publish_now


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/bench/counts":
        body = json.dumps(COUNTS).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
    else:
        await project(scope, receive, send)
