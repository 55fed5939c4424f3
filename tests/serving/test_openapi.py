"""Schemathesis fuzzes every route of the edge's OpenAPI document over real HTTP: no 500, answers as documented."""

from __future__ import annotations

import schemathesis
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import positive_data_acceptance

from velox.serving import openapi

schema = schemathesis.openapi.from_dict(openapi.document())


@schema.parametrize()
@hypothesis_settings(max_examples=20, deadline=None)
def test_edge_never_fails_and_answers_as_documented(case, edge_url: str) -> None:
    """Every check of ``schemathesis --checks all`` that fits a request at a time: a request the
    document allows is accepted (2xx, or 401/403/404 for who and what is asked)."""
    response = case.call(base_url=edge_url)
    case.validate_response(response, additional_checks=[positive_data_acceptance])
