from django.contrib import admin

from . import services
from .models import User


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "created_at"]
    search_fields = ["name", "email"]
    ordering = ["id"]
    readonly_fields = ["created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        services.user_save(obj)

    def delete_model(self, request, obj):
        services.user_delete(obj)
