"""Signals of the users app."""

from django.dispatch import Signal

# Sent by the bulk QuerySet methods that Django runs without post_save or
# post_delete (update, bulk_create); the sender is the User model.
users_changed = Signal()
