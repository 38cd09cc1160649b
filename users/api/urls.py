"""REST routes, each with and without a trailing slash: a redirect would drop a POST body."""

from django.urls import re_path

from .views import UserDetail, UserList

urlpatterns = [
    re_path(r"^users/?$", UserList.as_view(), name="user-list"),
    re_path(r"^users/(?P<pk>[^/]+)/?$", UserDetail.as_view(), name="user-detail"),
]
