"""``manage.py forgetexpired``: forget the expired history now, for cron or by hand."""

from django.core.management.base import BaseCommand

from users.live.history import try_forget_expired


class Command(BaseCommand):
    help = (
        "Forget the tombstones and command receipts older than USERS_HISTORY_SECONDS. "
        "Every server process already does this about once a minute for the whole "
        "cluster; this is for cron, where no server process runs for long, or by hand. "
        "Does nothing if another process is forgetting them at this moment."
    )

    def handle(self, *args, **options):
        forgotten = try_forget_expired()
        if forgotten is None:
            self.stdout.write("Another process is forgetting the expired history; nothing done.")
            return
        tombstones, receipts = forgotten
        self.stdout.write(f"Forgot {tombstones} tombstones and {receipts} command receipts.")
