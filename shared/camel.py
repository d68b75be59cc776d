"""The one camelCase base of every model on the wire or in a report (the seeds' API is camelCase).

``CamelModel`` is what a client writes: an unknown field is refused (a typo is a 400, not a
silently ignored option). ``CamelView`` is what jobq stores and answers with: read back
leniently, so an item written by a newer version still loads.

``defer_build``: a model's validator is built at its first use, not at import, so a container
builds only the models it uses (the consumer never builds the API's request and response models).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    model_config = ConfigDict(defer_build=True, alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CamelView(CamelModel):
    model_config = ConfigDict(extra="ignore")


__all__ = ["CamelModel", "CamelView"]
