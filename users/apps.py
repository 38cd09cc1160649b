from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "users"
    verbose_name = "Users"

    def ready(self):
        # Every change to users, whatever made it, reaches the live list: every
        # write goes through users.models.change_users, which sends users_changed.
        from .live.publisher import publish_after_commit
        from .models import User
        from .signals import users_changed

        users_changed.connect(publish_after_commit, sender=User, dispatch_uid="users.changed")
