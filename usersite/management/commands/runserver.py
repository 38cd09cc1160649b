"""``runserver``: daphne's, sending lists of any size (usersite.daphne_server)."""

from daphne.management.commands.runserver import Command as DaphneRunserverCommand

from usersite.daphne_server import Server


class Command(DaphneRunserverCommand):
    server_cls = Server
