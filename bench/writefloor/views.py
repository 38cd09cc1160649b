"""``POST /api/v1/users`` (and GET): DRF's generic list-and-create view over a ModelSerializer."""

from rest_framework import generics, serializers

from .models import User


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "name", "email"]


class UserList(generics.ListCreateAPIView):
    queryset = User.objects.order_by("id")
    serializer_class = UserSerializer
