"""Signals of the users app."""

from django.dispatch import Signal

# Sent in the writer's transaction by every change to users (save, delete and
# the bulk QuerySet methods alike: users.models.change_users); the sender is
# the User model. Django's own post_save and post_delete miss the bulk writes.
users_changed = Signal()
