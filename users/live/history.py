"""
What the live list remembers of its past: deletions and acknowledged writes.

A deleted user leaves a tombstone with the version of its deletion
(``UserQuerySet.delete``), so that a client resuming from an older version
learns of it (users.live.snapshots). Both tombstones and command receipts
(users.commands) are kept for USERS_HISTORY_SECONDS, in the database, so a
resume or a retry works across restarts of every server process and of Redis.

Forgetting what expired is a duty of the cluster (users.live.housekeeping runs it
in every server process, ``manage.py forgetexpired`` from cron), done by one
process at a time.
"""

import threading
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max
from django.utils import timezone

from ..models import (
    VERSION_ROW,
    CommandReceipt,
    User,
    UserListVersion,
    UserTombstone,
    new_epoch,
)
from ..signals import users_changed

# The key of the PostgreSQL advisory lock that one sweep of the history holds
# for the whole cluster: "usersite" in ASCII, a bigint no other lock here uses.
SWEEP_LOCK = int.from_bytes(b"usersite", "big") >> 1

# This process's sweeps, one at a time: a second one leaves at once, where on
# SQLite it would wait for the first one's write lock.
_sweeping = threading.Lock()


def forget_expired() -> tuple[int, int]:
    """
    Delete the tombstones and receipts older than USERS_HISTORY_SECONDS; return
    how many of each.

    The list's history then starts at the newest forgotten deletion: a client
    holding an older version gets a snapshot instead of a change set.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.USERS_HISTORY_SECONDS)
    with transaction.atomic():
        expired = UserTombstone.objects.filter(deleted_at__lt=cutoff)
        newest = expired.aggregate(newest=Max("version"))["newest"]
        tombstones = 0
        if newest is not None:
            UserListVersion.objects.filter(pk=VERSION_ROW, history_starts__lt=newest).update(
                history_starts=newest
            )
            tombstones, _ = UserTombstone.objects.filter(version__lte=newest).delete()
        receipts, _ = CommandReceipt.objects.filter(created_at__lt=cutoff).delete()
    return tombstones, receipts


def try_forget_expired() -> tuple[int, int] | None:
    """
    Forget the expired history unless another sweep is under way: None then.

    One sweep at a time in the cluster: on PostgreSQL the sweep's transaction
    holds an advisory lock (``pg_try_advisory_xact_lock``, which a second
    sweeper does not wait for); on SQLite its transaction holds the database's
    one write lock, so a sweeper in another process waits and finds nothing
    left. In this process a second sweeper never waits.
    """
    if not _sweeping.acquire(blocking=False):
        return None
    try:
        with transaction.atomic():
            if not _lock_sweeps():
                return None
            return forget_expired()
    finally:
        _sweeping.release()


def _lock_sweeps() -> bool:
    """In a transaction: take the cluster's sweep lock until it ends; False if another holds it."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [SWEEP_LOCK])
        return cursor.fetchone()[0]


def start_new_epoch(*, replacing: str | None = None) -> str | None:
    """
    Make every version held so far meaningless: clients resume with a snapshot.

    For a database restored from a backup, whose versions may repeat numbers
    that clients already hold for another list. With ``replacing``, only if
    the list is still in that epoch (several processes that notice the same
    restore start one new epoch between them); return the new epoch, or None
    when another was started meanwhile. Announced after the commit, as a
    change to users is (users.live.publisher), so running servers switch at once.
    """
    epoch = new_epoch()
    with transaction.atomic():
        rows = UserListVersion.objects.filter(pk=VERSION_ROW)
        if replacing is not None:
            rows = rows.filter(epoch=replacing)
        if not rows.update(epoch=epoch, history_starts=F("number")):
            return None
        UserTombstone.objects.all().delete()
        # The row is locked until the commit: its number cannot move meanwhile.
        version = UserListVersion.objects.values_list("number", flat=True).get(pk=VERSION_ROW)
        users_changed.send(sender=User, epoch=epoch, version=version)
    return epoch
