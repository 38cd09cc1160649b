from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from . import services
from .models import User


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "created_at"]
    search_fields = ["name", "email"]
    ordering = ["id"]
    readonly_fields = ["created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            services.user_save(obj)
            return
        # Only what this form changed: another writer's change to the rest stands.
        fields = [name for name in form.changed_data if name in services.FIELDS]
        services.user_update(obj, **{name: getattr(obj, name) for name in fields})

    def delete_model(self, request, obj):
        services.user_delete(obj)

    def changeform_view(self, request, *args, **kwargs):
        try:
            return super().changeform_view(request, *args, **kwargs)
        except User.DoesNotExist:
            return self.deleted_meanwhile(request)

    def delete_view(self, request, *args, **kwargs):
        try:
            return super().delete_view(request, *args, **kwargs)
        except User.DoesNotExist:
            return self.deleted_meanwhile(request)

    def deleted_meanwhile(self, request):
        """Say that another writer deleted the user while this form was open; back to the list."""
        self.message_user(
            request, "Someone else deleted this user meanwhile; nothing was saved.", messages.ERROR
        )
        return HttpResponseRedirect(reverse("admin:users_user_changelist"))
