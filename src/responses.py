"""Answers serialised once, for hot reads."""

from typing import Any

from fastapi import Response
from pydantic_core import to_json


def json_response(content: Any) -> Response:
    """A 200 JSON answer of `content`, serialised once by pydantic-core as the route's response model
    would serialise the same values (UUIDs, datetimes, enums), without validating them into models
    first: for reads whose values come from the database already of the model's types. The route
    keeps its `response_model`, which the OpenAPI document shows; FastAPI passes a Response through.
    """
    return Response(to_json(content), media_type="application/json")
