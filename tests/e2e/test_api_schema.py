"""The REST API against its own OpenAPI schema, with schemathesis, on a real server."""

import subprocess
import sys
from pathlib import Path

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_no_request_from_the_schema_gets_a_server_error_or_an_undocumented_body(start_server):
    server = start_server("uvicorn")
    run = subprocess.run(
        [
            SCHEMATHESIS, "run", f"{server.url}/api/schema/?format=json",
            "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples", "30", "--request-timeout", "10", "--no-color",
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
