"""Property-based tests of the local endpoint's API from its own OpenAPI schema (schemathesis):
generated requests to every route, valid and invalid, against the real server on 127.0.0.1.

Checks: no 5xx answer (``not_a_server_error``), and every answer has a status the schema names
and a body its schema allows (``status_code_conformance``, ``response_schema_conformance``).
The server runs with an API key, which the tests send; jobs with random inputs fail in the handler
(FAILED, not a server error), and the queue is kept small so that 429 is reached too.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from local_endpoint import start_endpoint

API_KEY = "schema-key"
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    log = tmp_path_factory.mktemp("schema") / "serve.log"
    env = {"GPU_WORKER_DEVICE": "cpu", "MAX_CONCURRENCY": "2", "SERVE_QUEUE_SIZE": "5",
           "SERVE_RUNSYNC_WAIT_S": "2", "WEBHOOK_RETRIES": "0", "WEBHOOK_TIMEOUT_S": "1", "FETCH_TIMEOUT_S": "2"}
    proc, base = start_endpoint(log, env=env, api_key=API_KEY)
    yield base
    proc.stop()
    assert "Traceback" not in proc.log_text(), proc.log_tail(60)


def openapi_document() -> dict:
    """The app's OpenAPI document, made in this process (nothing started: no queue, no warm-up);
    the server's own /openapi.json must be the same (test below)."""
    import torch

    from gpu_worker.config import Settings
    from gpu_worker.handler import handler
    from gpu_worker.server.app import create_app
    from gpu_worker.server.config import ServerConfig

    return create_app(ServerConfig(api_key=API_KEY), Settings(max_concurrency=2), handler, torch.device("cpu")).openapi()


schema = schemathesis.openapi.from_dict(openapi_document())


def test_the_servers_schema_is_the_one_tested(endpoint):
    served = requests.get(f"{endpoint}/openapi.json", timeout=10).json()
    assert served == openapi_document()
    assert {path.split("/")[-1] if "{job_id}" not in path else path.split("/")[-2] for path in served["paths"]
            if path.startswith("/v2/")} == {"run", "runsync", "status", "stream", "cancel", "retry", "health",
                                             "purge-queue"}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.timeout(300)
def test_no_server_errors_and_answers_match_the_schema(case, endpoint):
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {API_KEY}"}
    case.call_and_validate(base_url=endpoint, checks=CHECKS, timeout=30)
