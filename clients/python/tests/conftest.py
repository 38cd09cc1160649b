import pytest
from scripted_server import ScriptedServer


@pytest.fixture
async def server():
    async with ScriptedServer() as server:
        yield server
