"""Property-based API testing with schemathesis against the app's own /openapi.json.

Bounded for CI: every operation gets ``POSITIVE`` generated cases (schema-valid) and
``NEGATIVE`` ones (schema-violating); generation phase only (no coverage or stateful phase),
derandomised, and Hypothesis drops duplicates, so about 250 requests in all. No operation is
excluded (an operation with nothing to make invalid, like ``GET /health``, gets no negative
case). The app runs on the tiny checkpoint with a quick test protector, so the protect routes
run real jobs rather than answering 503.

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
