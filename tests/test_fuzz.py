"""A bounded property-based run of schemathesis against /api/v1/openapi.json and a live server:
no 5xx, and no response that contradicts the schema."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processes import ServerProcess, start_server, stop_server
from schemathesis import Case, GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.schemas import APIOperation

from bertd.schema.openapi import build_openapi

# The docs page and the dashboard are not JSON operations. The WebSocket routes are in: a plain
# GET of them must answer a status their operation lists (400).
schema = schemathesis.openapi.from_dict(build_openapi()).exclude(path_regex=r"(/docs$|^/$)")


TOKEN = "fuzz-token"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, base_models_dir: Path):
    directory = tmp_path_factory.mktemp("fuzz")
    # With API_TOKEN set, as the schema's security says: the fuzzer also checks that auth holds.
    # Pulls the fuzzer asks for go to a closed loopback port (tests reach nothing else), once.
    nowhere = "http://127.0.0.1:9"
    server = start_server(directory / "data", base_models_dir, directory / "server.log", API_TOKEN=TOKEN,
                          HF_ENDPOINT=nowhere, MODELSCOPE_ENDPOINT=nowhere, BASE_MODEL_DOWNLOAD_RETRIES="0")
    yield server
    stop_server(server)
    log = server.log()
    assert "unhandled error" not in log, log[-3000:]


EXAMPLES = int(os.environ.get("BERTD_FUZZ_EXAMPLES", "30"))  # 30 keeps the suite quick; raise it locally


# One test per operation with an id of its own (schemathesis' own parametrize gives every item the
# same node id, which pytest-xdist cannot schedule); both generation modes, as schemathesis' default:
# schema-valid requests must not fail, invalid ones must be refused.
OPERATIONS = [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=[operation.label for operation in OPERATIONS])
def test_every_operation_conforms(operation: APIOperation, live_server: ServerProcess) -> None:
    @given(case=st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode)))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def conforms(case: Case) -> None:
        # A schema-valid body may still name a file that was never uploaded: 400 is right there.
        case.call_and_validate(base_url=live_server.url, headers={"Authorization": f"Bearer {TOKEN}"},
                               excluded_checks=[positive_data_acceptance])

    conforms()
