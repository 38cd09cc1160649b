"""The live page at ``/`` and the REST API: ``/api/v1/users`` and ``/api/v1/users/<id>``."""

from django.views.generic import TemplateView
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.response import Response

from . import services
from .models import User
from .permissions import CanWriteUsers, may_write
from .serializers import UserListSerializer, UserSerializer
from .throttling import WriteRateThrottle


class LiveListPage(TemplateView):
    """The live list in a browser, with a form that adds users over the socket."""

    template_name = "users/live_list.html"

    def get_context_data(self, **kwargs):
        user = self.request.user
        return super().get_context_data(
            can_add=may_write(user, "add"),
            can_edit=user.is_staff and user.has_perm("users.change_user"),
            **kwargs,
        )


class UserViewMixin:
    queryset = User.objects.order_by("id")
    serializer_class = UserSerializer
    permission_classes = [CanWriteUsers]
    throttle_classes = [WriteRateThrottle]


class UserList(UserViewMixin, generics.ListCreateAPIView):
    """List every user, or create one."""

    @extend_schema(responses=UserListSerializer)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def list(self, request, *args, **kwargs):
        return Response(UserListSerializer({"users": self.get_queryset()}).data)


class UserDetail(UserViewMixin, generics.RetrieveUpdateDestroyAPIView):
    """Read, change or delete one user."""

    def perform_destroy(self, instance):
        services.user_delete(instance)
