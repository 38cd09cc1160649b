"""URL configuration: the live page, the admin, the API and its documentation, health, metrics."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from users.api.views import LiveListPage, asyncapi, health, metrics

urlpatterns = [
    path("", LiveListPage.as_view(), name="live-list"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("users.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/asyncapi.yaml", asyncapi, name="asyncapi"),
    path("healthz", health, name="health"),
    path("metrics", metrics, name="metrics"),
]
