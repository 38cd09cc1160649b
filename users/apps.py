from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "users"
    verbose_name = "Users"

    def ready(self):
        # Every change to users, whatever made it, reaches the live list: every
        # write goes through users.models.change_users, which sends users_changed.
        from .live.relay import record_change
        from .models import User
        from .signals import users_changed

        users_changed.connect(record_change, sender=User, dispatch_uid="users.changed")
