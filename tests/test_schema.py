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
    plain = schema["components"]["schemas"]["PaginatedUserList"]["oneOf"][0]
    assert plain["properties"]["users"]["type"] == "array", "the list is an object with an array"


def test_the_schema_describes_the_lists_query_pages_etags_and_throttle(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    plain, page = schema["components"]["schemas"]["PaginatedUserList"]["oneOf"]
    assert (plain["required"], plain["additionalProperties"]) == (["users"], False)
    assert page["required"] == ["users", "total", "next"]
    assert page["properties"]["next"]["nullable"]
    listing = schema["paths"]["/api/v1/users/"]["get"]
    parameters = {parameter["name"]: parameter for parameter in listing["parameters"]}
    assert set(parameters) == {"search", "order", "limit", "cursor", "If-None-Match"}
    assert parameters["order"]["schema"]["enum"] == ["id", "-id", "name", "-name"]
    limit = parameters["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 500)
    assert set(listing["responses"]) == {"200", "304", "400", "401", "429", "503"}
    assert "Retry-After" in listing["responses"]["429"]["headers"]
    retrieve = schema["paths"]["/api/v1/users/{id}/"]["get"]
    assert "If-None-Match" in {parameter["name"] for parameter in retrieve["parameters"]}
    for operation in (listing, retrieve):
        assert {"200", "304", "401"} <= set(operation["responses"])
        assert "ETag" in operation["responses"]["304"]["headers"]


def test_every_operation_may_answer_a_database_outage_with_503_and_retry_after(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert len(operations) >= 6
    for operation in operations:
        assert "Retry-After" in operation["responses"]["503"]["headers"]


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
