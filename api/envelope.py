"""The response envelope of every route: ``{"success": true, "data": ...}`` or an error."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    # defer_build: FastAPI makes a TypeAdapter of each route's Envelope[X] at import; with the
    # model deferred, its validator and serializer are built at the route's first answer instead.
    model_config = ConfigDict(defer_build=True)

    success: Literal[True] = True
    data: T


class ErrorBody(BaseModel):
    model_config = ConfigDict(defer_build=True)

    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    model_config = ConfigDict(defer_build=True)

    success: Literal[False] = False
    error: ErrorBody


ERROR_ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error envelope under the given status codes.

    A ``$ref`` rather than ``{"model": ErrorEnvelope}``: FastAPI builds a pydantic TypeAdapter at
    import for every response model of every route (some 250 here, all for this one schema), a
    third of the API's cold start. The schema is added to the components once (``with_error_envelope``).
    """
    return {
        code: {"description": HTTPStatus(code).phrase, "content": {"application/json": {"schema": ERROR_ENVELOPE_REF}}}
        for code in codes
    }


def with_error_envelope(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (an OpenAPI document) with ErrorEnvelope and ErrorBody among its components."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    envelope = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    for name, definition in envelope.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault("ErrorEnvelope", envelope)
    return schema
