from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from . import services
from .models import User


class UserForm(forms.ModelForm):
    """The admin's user form, carrying the version it was opened at."""

    # A form without it (an older page, a script) saves as before: last write wins.
    seen_version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = User
        fields = ["name", "email"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["seen_version"].initial = self.instance.version


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    form = UserForm
    list_display = ["name", "email", "created_at"]
    search_fields = ["name", "email"]
    ordering = ["id"]
    readonly_fields = ["created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            services.user_save(obj)
            return
        # Only what this form changed: another writer's change to the rest stands.
        fields = {name: getattr(obj, name) for name in form.changed_data if name in services.FIELDS}
        services.user_update(obj, **fields, if_version=form.cleaned_data.get("seen_version"))

    def delete_model(self, request, obj):
        services.user_delete(obj)

    def changeform_view(self, request, object_id=None, *args, **kwargs):
        try:
            return super().changeform_view(request, object_id, *args, **kwargs)
        except User.DoesNotExist:
            return self.deleted_meanwhile(request)
        except services.UserChangedError as conflict:
            return self.changed_meanwhile(request, conflict.user, request.POST)

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

    def changed_meanwhile(self, request, current: User, sent):
        """Refuse a save over another writer's change: say what it changed; reopen the form."""
        differences = ", ".join(
            f"{field} is now “{getattr(current, field)}” (you sent “{sent.get(field, '')}”)"
            for field in services.FIELDS
            if getattr(current, field) != sent.get(field, "").strip()
        )
        self.message_user(
            request,
            f"Someone else changed this user since you opened it"
            f"{': ' + differences if differences else ''}. Nothing was saved; "
            "the form now shows the user as it is.",
            messages.ERROR,
        )
        return HttpResponseRedirect(reverse("admin:users_user_change", args=[current.pk]))
