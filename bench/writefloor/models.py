"""The floor's one model: the project's users.User fields, with none of its rules or signals."""

from django.db import models


class User(models.Model):
    name = models.CharField(max_length=150)
    email = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    version = models.BigIntegerField(default=0, db_index=True)

    def __str__(self):
        return self.name
