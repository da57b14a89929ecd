"""Property-based API testing with schemathesis against the app's own /openapi.json.

Bounded for CI: every operation gets ``POSITIVE`` generated cases (schema-valid) and
``NEGATIVE`` ones (schema-violating); generation phase only (no coverage or stateful phase),
derandomised, and Hypothesis drops duplicates, so about 250 requests in all. No operation is
excluded (an operation with nothing to make invalid, like ``GET /health``, gets no negative
case). The app runs on the tiny checkpoint with a quick test protector, so the protect routes
run real jobs rather than answering 503.

A third test runs schemathesis' stateful phase against the app under uvicorn on 127.0.0.1
(real sockets, the connection guard, the whole middleware stack): chains such as protect ->
job status -> result, linked through ``Location`` and the job id, for ``STATEFUL_EXAMPLES``
scenarios of at most ``STATEFUL_STEPS`` calls.

Checks: no 5xx; every status code, content type and JSON body conforms to the schema; schema-
violating requests are rejected with a 4xx. Not run: ``positive_data_acceptance``
(schema-valid bytes are rarely a decodable image, so a 4xx is the right answer for them).
"""

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from facetrust.serve import create_app

from .conftest import InvertProtector, make_settings
from .servers import served_in_thread

POSITIVE = 20
NEGATIVE = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_checkpoint):
    tmp = tmp_path_factory.mktemp("st")
    app = create_app(
        make_settings(tmp, tiny_checkpoint, queue_size=4), protector_factory=InvertProtector
    )
    with TestClient(app):  # run the lifespan: models load once, up front
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        yield schema


def _operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


def test_schema_lists_every_route(api):
    labels = {op.label for op in _operations(api)}
    assert labels == {
        "GET /health",
        "GET /",
        "POST /v1/detect",
        "POST /v1/explain",
        "POST /v1/protect",
        "GET /v1/jobs/{job_id}",
        "GET /v1/jobs/{job_id}/result",
        "POST /predict",
        "POST /gradcam",
        "POST /protect",
        "POST /v1/provenance",
    }


def _runner(strategy, label: str, examples: int, calls: list[str]):
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case):
        response = case.call()
        calls.append(f"{label} {response.status_code}")
        case.validate_response(response, checks=CHECKS)

    return run


@pytest.mark.parametrize(
    ("mode", "examples"),
    [("positive", POSITIVE), ("negative", NEGATIVE)],
)
def test_no_server_errors_and_conforming_answers(api, mode, examples):
    from schemathesis import GenerationMode

    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    calls: list[str] = []
    nothing_to_negate = []
    for op in _operations(api):
        strategy = op.as_strategy(generation_mode=generation)

        run = _runner(strategy, op.label, examples, calls)
        try:
            run()
        except Unsatisfiable:  # e.g. GET /health: no parameter or body to make invalid
            assert generation is GenerationMode.NEGATIVE, op.label
            nothing_to_negate.append(op.label)
    assert len(calls) >= 5 * examples
    assert not {"POST /v1/detect", "POST /v1/protect", "POST /predict"} & set(nothing_to_negate)


# ---- stateful phase through a real socket ----------------------------------------------------

STATEFUL_EXAMPLES = 12
STATEFUL_STEPS = 5


@pytest.fixture(scope="module")
def socket_schema(tmp_path_factory, tiny_checkpoint):
    """The app under uvicorn on 127.0.0.1 (the connection guard included), its schema read
    over HTTP: requests go through real sockets, the h11 parser and the middleware stack."""
    from facetrust.serve.server import GuardedH11Protocol

    tmp = tmp_path_factory.mktemp("st-socket")
    app = create_app(
        make_settings(tmp, tiny_checkpoint, queue_size=4), protector_factory=InvertProtector
    )
    guarded = GuardedH11Protocol.configure(header_timeout_s=10, max_connections=64)
    with served_in_thread(app, http=guarded) as base:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")


def test_stateful_chains_over_a_socket(socket_schema):
    """Chains such as protect -> job status -> result, linked through the ``Location`` header
    and the job id, for a bounded number of cases; the same checks as above on every step."""
    base = socket_schema.as_state_machine()
    steps: list[str] = []

    class Machine(base):  # type: ignore[misc, valid-type]
        def validate_response(self, response, case, additional_checks=None, **kwargs):
            steps.append(f"{case.operation.label} {response.status_code}")
            case.validate_response(response, checks=CHECKS)

    Machine.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    assert len(steps) >= STATEFUL_EXAMPLES
    # the chains reached job routes with ids the server gave out, not only made-up ones
    assert any(s.startswith("GET /v1/jobs/{job_id}") and s.endswith(" 200") for s in steps), steps
