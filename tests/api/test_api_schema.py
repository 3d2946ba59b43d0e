"""Schemathesis against the published OpenAPI document: generated requests (a few per operation,
as admin, on SQLite and PostgreSQL) never get a server error, and answers match the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from tests.fixtures_api import db_url, evidence_set, pg_admin, start_api  # noqa: F401

EXAMPLES = 4


@pytest.fixture
def fuzz_server(db_url, evidence_set):
    api, server = start_api(db_url, evidence_set, stream_max_s=0.5)  # /events ends quickly so each call returns
    try:
        yield api
    finally:
        server.stop()
        api.store.close()


def test_generated_requests_get_no_server_error(fuzz_server):
    admin = fuzz_server.client("admin")
    spec = admin.get("/api/v1/openapi.json").json()
    admin_token_id = next(t["id"] for t in admin.get("/api/v1/tokens").json() if t["name"] == "admin-machine")
    schema = schemathesis.openapi.from_dict(spec)
    headers = {"Authorization": f"Bearer {fuzz_server.tokens['admin']}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case) -> None:  # noqa: ANN001
            if case.path_parameters and case.path_parameters.get("token_id") == admin_token_id:
                case.path_parameters["token_id"] = admin_token_id + 1000  # keep the credential this run uses
            response = case.call(base_url=fuzz_server.url, headers=headers, timeout=30)
            try:
                case.validate_response(response, checks=[not_a_server_error, response_schema_conformance, status_code_conformance])
            except Exception as exc:  # collect, so one run reports every operation that fails
                failures.append(f"{case.method} {case.formatted_path}: {str(exc)[:600]}")

        run()
    assert operations >= 30
    assert not failures, "\n\n".join(failures[:10])
