"""
Notice a database that went back: restored from a backup without ``manage.py newepoch``.

Clients hold versions of the list's epoch. A restored database brings back an
older version row in the same epoch, so its next writes hand out again the
versions that clients already hold for other lists, and a client resuming
from one would get a change set that leaves it on a wrong list. The evidence
is a version read committed that is lower than one read committed before, in
the same epoch: versions only grow otherwise. Whoever sees it starts a new
epoch (``users.live.history.start_new_epoch``), as ``manage.py newepoch`` would, so
every client takes the whole list.

Who remembers the versions read before:
- each relay, the newest version it heard of (users.live.watchdog): its once-a-second
  check compares the committed version with it, so a running process notices
  a restore within a second. Not on every announcement older than that: in a
  burst most are (each process hears its own versions back from the layer),
  and a read for each slowed a 500-client burst by a second or more;
- with Redis, one key per epoch holding the newest version any relay heard of
  (``record``: at each check and at shutdown), which the restore does not
  touch: a process started after the restore notices it at startup
  (users.live.housekeeping) and each relay at its first join.

Several processes notice one restore at about the same time; the new epoch
replaces only the epoch they saw (``start_new_epoch(replacing=...)``), so one
of them starts it and the others hear of it.

Not noticed: a restore after which, within the second before the next
check, as many versions were written as went back (a backup only moments
old), nor, without Redis (or after Redis lost its data), a restore made while
no process ran. ``manage.py newepoch`` after every restore covers those.
"""

import logging

from channels.db import database_sync_to_async

from . import history, snapshots

# Redis: the newest version of an epoch that a relay heard of, kept while
# relays keep recording it and this long after (a restore from an older
# backup is still noticed when the service was down a while).
MARK_KEY = "usersite:users:newest-version:{epoch}"
MARK_SECONDS = 30 * 86400

# Set the epoch's mark to the higher of it and ARGV[1]; return the mark.
RECORD_SCRIPT = """
local newest = tonumber(redis.call('GET', KEYS[1]))
local version = tonumber(ARGV[1])
if newest == nil or version > newest then
  redis.call('SET', KEYS[1], ARGV[1])
  newest = version
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return newest
"""

logger = logging.getLogger(__name__)

acurrent_version = database_sync_to_async(snapshots.current_version)


def went_back(known: tuple[str, int], committed: tuple[str, int]) -> bool:
    """Whether ``committed``, read after ``known`` was, is an older version of the same epoch."""
    return committed[0] == known[0] and committed[1] < known[1]


async def record(client, epoch: str, version: int) -> int:
    """Record that ``version`` of ``epoch`` was read committed; return the newest recorded."""
    key = MARK_KEY.format(epoch=epoch)
    return int(await client.eval(RECORD_SCRIPT, 1, key, version, MARK_SECONDS))


async def newest_recorded(client, epoch: str) -> int:
    """Return the newest version of ``epoch`` recorded by any process, or -1."""
    value = await client.get(MARK_KEY.format(epoch=epoch))
    return -1 if value is None else int(value)


async def start_new_epoch(known: tuple[str, int], committed: tuple[str, int]) -> str | None:
    """
    Start a new epoch after the list went back from ``known`` to ``committed``,
    unless another process did already; return the epoch started, or None.
    """
    epoch = await database_sync_to_async(history.start_new_epoch)(replacing=committed[0])
    if epoch is None:
        logger.info("Another process started a new epoch of the users list")
        return None
    logger.warning(
        "The users list went back from version %s to %s of epoch %s: the database was "
        "restored from a backup, and `manage.py newepoch` was not run. Started epoch %s: "
        "every client takes the whole list.",
        known[1], committed[1], committed[0], epoch,
    )  # fmt: skip
    return epoch


async def check_with_redis(client) -> bool:
    """
    Compare the committed version with the newest one recorded in Redis for its
    epoch; start a new epoch if the database went back. Return whether it did.

    For a process that has heard of no version yet: at startup.
    """
    epoch, _ = await acurrent_version()
    known = (epoch, await newest_recorded(client, epoch))
    # Read again, after the mark: anything recorded was committed before.
    committed = await acurrent_version()
    if not went_back(known, committed):
        return False
    return await start_new_epoch(known, committed) is not None
