from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "users"
    verbose_name = "Users"

    def ready(self):
        # Every change to users, whatever made it, reaches the live list.
        from django.db.models.signals import post_delete, post_save

        from .history import record_deletion
        from .models import User
        from .relay import record_change
        from .signals import users_changed

        post_save.connect(record_change, sender=User, dispatch_uid="users.saved")
        post_delete.connect(record_deletion, sender=User, dispatch_uid="users.tombstone")
        post_delete.connect(record_change, sender=User, dispatch_uid="users.deleted")
        users_changed.connect(record_change, sender=User, dispatch_uid="users.changed")
