from django.urls import path

from .views import UserList

urlpatterns = [
    path("api/v1/users", UserList.as_view()),
    path("api/v1/users/", UserList.as_view()),
]
