"""A property-based run (schemathesis) against the OpenAPI schema the management API
serves: generated requests for every operation, with a team's management key and an
operator key, get no 5xx and no answer that violates the schema (status code, content
type, body). Bounded by max_examples so it runs in `make test`."""
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tokenhub_portal.accounts.models import ApiKey, Team
from tokenhub_portal.web.services import issue_key

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def served_schema(api, db):
    r = api.get("/api/v1/openapi.json")
    assert r.status_code == 200
    return schemathesis.openapi.from_dict(r.json())


schema = schemathesis.pytest.from_fixture("served_schema")


@pytest.fixture
def keys(db, seeded, make_key, make_record):
    team = Team.objects.create(name="fuzz")
    issued = make_key("fuzz", name="spender")
    make_record(issued, input_tokens=100, output_tokens=10)
    return {
        "team": issue_key(team, name="m", kind=ApiKey.Kind.MANAGEMENT).plaintext,
        "operator": issue_key(None, name="ops", kind=ApiKey.Kind.MANAGEMENT).plaintext,
    }


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_the_served_schema_holds(case, api, keys):
    operator = case.path.startswith("/api/v1/teams")
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"}
    headers["Authorization"] = f"Bearer {keys['operator' if operator else 'team']}"
    content = kwargs.get("data")
    if kwargs.get("json") is not None or "json" in kwargs:
        content = json.dumps(kwargs.get("json")).encode()
        headers.setdefault("Content-Type", "application/json")
    response = api.request(kwargs["method"], kwargs["url"].replace("http://testserver", ""), headers=headers,
                           params=kwargs.get("params"), content=content, cookies=kwargs.get("cookies"))
    case.validate_response(response, checks=CHECKS)
