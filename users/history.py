"""
What the live list remembers of its past: deletions and acknowledged writes.

A deleted user leaves a tombstone with the version of its deletion
(``UserQuerySet.delete``), so that a client resuming from an older version
learns of it (users.snapshots). Both tombstones and command receipts (users.commands) are kept for
USERS_HISTORY_SECONDS, in the database, so a resume or a retry works across
restarts of every server process and of Redis.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from .models import (
    VERSION_ROW,
    CommandReceipt,
    UserListVersion,
    UserTombstone,
    new_epoch,
)


def forget_expired() -> None:
    """
    Delete the tombstones and receipts older than USERS_HISTORY_SECONDS.

    The list's history then starts at the newest forgotten deletion: a client
    holding an older version gets a snapshot instead of a change set.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.USERS_HISTORY_SECONDS)
    with transaction.atomic():
        expired = UserTombstone.objects.filter(deleted_at__lt=cutoff)
        newest = expired.aggregate(newest=Max("version"))["newest"]
        if newest is not None:
            UserListVersion.objects.filter(pk=VERSION_ROW, history_starts__lt=newest).update(
                history_starts=newest
            )
            UserTombstone.objects.filter(version__lte=newest).delete()
        CommandReceipt.objects.filter(created_at__lt=cutoff).delete()


def start_new_epoch() -> str:
    """
    Make every version held so far meaningless: clients resume with a snapshot.

    For a database restored from a backup, whose versions may repeat numbers
    that clients already hold for another list.
    """
    epoch = new_epoch()
    with transaction.atomic():
        UserListVersion.objects.filter(pk=VERSION_ROW).update(
            epoch=epoch, history_starts=F("number")
        )
        UserTombstone.objects.all().delete()
    return epoch
