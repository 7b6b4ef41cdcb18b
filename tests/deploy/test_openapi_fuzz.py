"""Schemathesis generates requests from the service's own OpenAPI spec (conforming and deliberately
non-conforming ones) and sends them to a live server: none may be answered with a 5xx, and every
error of /predict and /explain is the documented JSON shape."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (the 'dev' extra)")


def test_no_request_from_the_spec_causes_a_server_error(server):
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(server + "openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "GET /health", "GET /metadata", "POST /predict", "POST /explain"}
    calls = []
    for operation in operations:
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if operation.method == "post" else [])  # GETs take nothing
        for mode in modes:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def run(case):
                response = case.call()
                calls.append(response.status_code)
                assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:300]}"
                if case.path in ("/predict", "/explain") and response.status_code >= 400:
                    assert set(response.json()["error"]) == {"code", "message", "field"}

            run()
    assert len(calls) >= 40 and any(code == 200 for code in calls) and any(400 <= code < 500 for code in calls)
