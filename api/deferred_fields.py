"""FastAPI's per-field validators, built at their first use instead of when a route is declared.

FastAPI makes a pydantic ``TypeAdapter`` (a core schema, a validator and a serializer) for every
path, query and header parameter, body and response of every route as the route is declared:
some 170 here, about 50 ms of CPU of the API's cold start, most of them for routes a container
never serves. Deferred, each is built the first time FastAPI uses it (a request that validates
the parameter, the response it serializes, the OpenAPI document), by FastAPI's own code and with
its own warning filter, so the validation, its error messages and the document are unchanged.

FastAPI has no option for this: ``install`` wraps its ``ModelField`` (``fastapi._compat.v2``, the
pydantic 2 field every route uses). With a FastAPI whose ``ModelField`` differs it changes nothing
and the routes are built as before (tests/unit/test_packaging.py says when that happens). A route
whose type pydantic cannot handle now fails at its first use instead of at import; the OpenAPI
document (tests/static) uses every field, so such a route still fails the tests.
"""

from __future__ import annotations

from typing import Any

_ADAPTER = "_jobq_type_adapter"


def install() -> bool:
    """Defer the adapters of the fields made from now on; True when FastAPI's field is the one expected."""
    try:
        from fastapi._compat.v2 import ModelField
    except ImportError:
        return False
    if getattr(ModelField, "_jobq_deferred", False):
        return True
    build = ModelField.__post_init__
    if not callable(build) or "_type_adapter" in ModelField.__dict__ or hasattr(ModelField, "__slots__"):
        return False

    def defer(self: Any) -> None:
        """Nothing at declaration: the adapter is made when ``_type_adapter`` is first read."""

    def adapter(self: Any) -> Any:
        made = self.__dict__.get(_ADAPTER)
        if made is None:
            build(self)  # FastAPI's own __post_init__: assigns self._type_adapter (the setter below)
            made = self.__dict__[_ADAPTER]
        return made

    def keep(self: Any, value: Any) -> None:
        self.__dict__[_ADAPTER] = value

    ModelField.__post_init__ = defer  # type: ignore[method-assign]  # FastAPI offers no hook for this
    ModelField._type_adapter = property(adapter, keep)  # type: ignore[assignment]  # a lazy attribute in place of the eager one
    ModelField._jobq_deferred = True  # type: ignore[attr-defined]
    return True


def built(field: Any) -> bool:
    """Tests: whether ``field``'s adapter has been made (at its first use, or at declaration when not deferred)."""
    return _ADAPTER in vars(field) or "_type_adapter" in vars(field)
