"""What FastAPI does as each route is declared, made cheaper for the API's cold start (same app, same answers).

* Field validators at first use. FastAPI makes a pydantic ``TypeAdapter`` (a core schema, a
  validator and a serializer) for every path, query and header parameter, body and response of
  every route as the route is declared: some 170 here, about 45 ms of CPU of the API's import, most
  of them for routes a container never serves. Deferred, each is built the first time FastAPI uses
  it (a request that validates the parameter, the response it serializes, the OpenAPI document), by
  FastAPI's own code with its own warning filter, so the validation, its error messages and the
  document are unchanged. A route whose type pydantic cannot handle now fails at its first use
  instead of at import; the OpenAPI document (tests/static, tests/unit/test_packaging.py) uses every
  field, so such a route still fails the tests.
* The pydantic v1 check without pydantic.v1. FastAPI refuses pydantic v1 models by testing each
  route's types against ``pydantic.v1.BaseModel``, which imports the whole v1 package (~10 ms). No
  v1 model can exist until something imported pydantic.v1, so the check looks only once it is.

FastAPI has no option for either: ``install`` replaces the functions in ``fastapi._compat`` (the
pydantic 2 field every route uses, and the v1 checks). With a FastAPI whose internals differ it
changes nothing and the routes are built as before (tests/unit/test_packaging.py says when that happens).
"""

from __future__ import annotations

import sys
from typing import Any

_ADAPTER = "_jobq_type_adapter"


def install() -> bool:
    """Apply both to the routes declared from now on; True when FastAPI's internals are the ones expected."""
    return _defer_field_validators() & _check_v1_models_without_importing_them()


def _defer_field_validators() -> bool:
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
    ModelField._jobq_deferred = True  # type: ignore[attr-defined]  # our marker: installed once
    return True


def _check_v1_models_without_importing_them() -> bool:
    try:
        from fastapi import encoders
        from fastapi._compat import shared
    except ImportError:
        return False
    if not all(callable(getattr(module, name, None)) for module, name in (
        (shared, "is_pydantic_v1_model_class"), (shared, "is_pydantic_v1_model_instance"), (encoders, "is_pydantic_v1_model_instance"),
    )):
        return False

    def is_v1_model_class(cls: Any) -> bool:
        v1 = sys.modules.get("pydantic.v1")
        return v1 is not None and shared.lenient_issubclass(cls, v1.BaseModel)

    def is_v1_model_instance(obj: Any) -> bool:
        v1 = sys.modules.get("pydantic.v1")
        return v1 is not None and isinstance(obj, v1.BaseModel)

    shared.is_pydantic_v1_model_class = is_v1_model_class
    shared.is_pydantic_v1_model_instance = is_v1_model_instance
    encoders.is_pydantic_v1_model_instance = is_v1_model_instance  # imported there by name
    return True


def built(field: Any) -> bool:
    """Tests: whether ``field``'s adapter has been made (at its first use, or at declaration when not deferred)."""
    return _ADAPTER in vars(field) or "_type_adapter" in vars(field)
