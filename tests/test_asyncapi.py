"""
The AsyncAPI document of the socket (docs/asyncapi.yaml): served, linked from
the API docs, and true to its examples, to docs/protocol.md and to the frames
the server sends. tests/e2e/test_asyncapi_parser.py runs AsyncAPI's parser on it.
"""

import json
import re

import pytest
import yaml
from channels.db import database_sync_to_async
from django.conf import settings
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from users import services
from users.queries import MAX_LIMIT, ORDERS, PARAMETERS
from users.sockets.consumers import CLIENT_ID
from users.sockets.routing import SOCKET_PATH

DOCUMENT_PATH = settings.BASE_DIR / "docs" / "asyncapi.yaml"
DOCUMENT_URL = "/api/asyncapi.yaml"
DOCUMENT_URI = "urn:usersite:asyncapi"  # the base that the document's own "#/..." refs resolve in

V1_MESSAGES = {"list", "addUser", "create", "error"}
V2_MESSAGES = {"snapshot", "changes", "ack", "error", "create", "update", "delete", "query"}


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load(DOCUMENT_PATH.read_text())


def message_validator(document: dict, message: str) -> Draft7Validator:
    """Validate payloads against ``components/messages/<message>`` of the document."""
    resource = Resource.from_contents(document, default_specification=DRAFT7)
    registry = Registry().with_resource(DOCUMENT_URI, resource)
    schema = {"$ref": f"{DOCUMENT_URI}#/components/messages/{message}/payload"}
    return Draft7Validator(schema, registry=registry)


def check_frame(document: dict, protocol: int, frame) -> None:
    """Check a frame the server sends against the document's message for it."""
    if protocol == 1:
        message = "v1List" if isinstance(frame, list) else "v1Error"
    else:
        message = f"v2{frame['type'].capitalize()}"
    message_validator(document, message).validate(frame)


def test_the_document_is_served_as_yaml_and_describes_both_protocols(client):
    response = client.get(DOCUMENT_URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/yaml"
    assert response.content == DOCUMENT_PATH.read_bytes()
    served = yaml.safe_load(response.content)
    assert served["asyncapi"] == "3.0.0"
    v1, v2 = served["channels"]["usersV1"], served["channels"]["usersV2"]
    assert v1["address"] == v2["address"] == SOCKET_PATH
    assert set(v1["messages"]) == V1_MESSAGES
    assert set(v2["messages"]) == V2_MESSAGES
    assert "users.v1" in json.dumps(v1["bindings"])
    assert "users.v2" in json.dumps(v2["bindings"])
    query = v2["bindings"]["ws"]["query"]["properties"]
    assert set(query) == {"epoch", "version", "client", *PARAMETERS}
    assert query["order"]["enum"] == list(ORDERS)
    assert query["limit"]["maximum"] == MAX_LIMIT
    assert query["client"]["pattern"] == f"^{CLIENT_ID.pattern}$"


def test_the_document_is_served_to_reads_only(client):
    assert client.head(DOCUMENT_URL).status_code == 200
    assert client.post(DOCUMENT_URL).status_code == 405


@pytest.mark.django_db
def test_the_api_docs_link_to_the_document(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    # Swagger UI at /api/docs/ renders the description as Markdown: a link.
    assert f"]({DOCUMENT_URL})" in schema["info"]["description"]


def test_every_example_matches_its_message(document):
    examples = 0
    for name, message in document["components"]["messages"].items():
        for example in message.get("examples", []):
            message_validator(document, name).validate(example["payload"])
            examples += 1
    assert examples >= len(document["components"]["messages"])


def test_the_frames_of_the_protocol_page_match_the_document(document):
    """Every whole frame that docs/protocol.md shows a server send is one the document allows."""
    text = (settings.BASE_DIR / "docs" / "protocol.md").read_text()
    v1_text, v2_text = text.split("\n## Protocol v2\n")
    checked = 0
    for protocol, section in ((1, v1_text), (2, v2_text)):
        for line in re.findall(r"^< (.*)$", section, flags=re.MULTILINE):
            if "..." not in line:
                check_frame(document, protocol, json.loads(line))
                checked += 1
    assert checked >= 20


async def receive_until(socket, *kinds: str) -> list:
    """Receive frames until one of each of ``kinds`` (v2 types) has come, in any order."""
    frames, missing = [], set(kinds)
    while missing:
        frames.append(frame := json.loads(await socket.receive_from(timeout=3)))
        missing.discard(frame["type"])
    return frames


@pytest.mark.django_db(transaction=True)
async def test_the_frames_the_server_sends_match_the_document(connect, document):
    await database_sync_to_async(services.user_create)(name="Ada", email="ada@example.org")
    v1 = await connect()
    v2 = await connect(subprotocols=["users.v2"])
    (snapshot,) = frames = await receive_until(v2, "snapshot")
    v1_frames = [json.loads(await v1.receive_from())]
    await v2.send_json_to({"action": "create", "name": "Grace", "request_id": "g"})
    frames += await receive_until(v2, "ack", "changes")
    grace = next(frame["user"] for frame in frames if frame["type"] == "ack")
    await v2.send_json_to({"action": "update", "id": grace["id"], "name": "G", "if_version": 0})
    frames += await receive_until(v2, "error")  # conflict: Grace is past version 0
    for command in [
        {"action": "update", "id": grace["id"], "email": "grace@example.org"},
        {"action": "delete", "id": grace["id"], "request_id": "d"},
    ]:
        await v2.send_json_to(command)
        frames += await receive_until(v2, "ack", "changes")
    await v2.send_json_to({"action": "delete", "id": grace["id"], "request_id": "again"})
    await v2.send_to(text_data="__addUser__")
    frames += await receive_until(v2, "error")
    frames += await receive_until(v2, "error")
    resume = f"?epoch={snapshot['epoch']}&version={snapshot['version']}"
    for query in (resume, "?version=1"):
        resumed = await connect(f"{SOCKET_PATH}{query}", subprotocols=["users.v2"])
        frames += await receive_until(resumed, "changes" if query == resume else "snapshot")
    windowed = await connect(
        f"{SOCKET_PATH}?search=a&order=-name&limit=2", subprotocols=["users.v2"]
    )
    frames += await receive_until(windowed, "snapshot")
    await windowed.send_json_to({"action": "query", "limit": 0, "request_id": "bad"})
    await windowed.send_json_to({"action": "query", "order": "name", "request_id": "q"})
    frames += await receive_until(windowed, "error", "ack", "snapshot")
    await v2.send_json_to({"action": "create", "name": "Alan"})
    frames += await receive_until(windowed, "changes")
    await v1.send_json_to({"action": "create", "name": " "})
    while isinstance(v1_frames[-1], list):  # the lists of the changes above, then the error
        v1_frames.append(json.loads(await v1.receive_from(timeout=3)))

    assert {frame["type"] for frame in frames} == {"snapshot", "changes", "ack", "error"}
    writes = [frame for frame in frames if frame["type"] == "ack" and "query" not in frame]
    assert writes
    assert all("version" in frame for frame in writes)
    codes = {frame["code"] for frame in frames if frame["type"] == "error"}
    assert {"conflict", "not_found", "unknown_action", "invalid_query"} <= codes
    assert {"total"} <= frames[-1].keys()  # the live query's change set
    assert {type(frame) for frame in v1_frames} == {list, dict}
    for frame in frames:
        check_frame(document, 2, frame)
    for frame in v1_frames:
        check_frame(document, 1, frame)
