import pytest
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db


def test_the_openapi_schema_is_valid_and_describes_the_rest_api(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)  # against the OpenAPI 3 JSON schema; raises when invalid
    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/users/", "/api/v1/users/{id}/"} <= set(schema["paths"])
    users = schema["components"]["schemas"]["UserList"]["properties"]["users"]
    assert users["type"] == "array", "the REST list is an object holding an array"


def test_the_interactive_docs_load_their_files_from_this_site(client):
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn" not in page.lower()
    assert (
        client.get(
            "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
        ).status_code
        == 200
    )
