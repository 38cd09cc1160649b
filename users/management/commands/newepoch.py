"""``manage.py newepoch``: after a restore from a backup, make v2 clients take the whole list."""

from django.core.management.base import BaseCommand, CommandError

from users.live.history import start_new_epoch


class Command(BaseCommand):
    help = (
        "Start a new epoch of the users list's versions. Run it after restoring the "
        "database from a backup: the versions that clients hold may then name other "
        "lists, and a new epoch makes every protocol v2 client take the whole list."
    )

    def handle(self, *args, **options):
        epoch = start_new_epoch()
        if epoch is None:
            raise CommandError("The users list has no version row: run `manage.py migrate`.")
        self.stdout.write(f"The users list is now in epoch {epoch}.")
