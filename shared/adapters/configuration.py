"""The settings of the module-level adapters (counters, policies, the queue directory), given by the composition roots.

Those three are called as modules from many places (the worker's default policy, the health sweep,
the API routes, the stream's counting), so they are not built with their values like the other
adapters. Each composition root gives them its settings instead (``use_settings``, once at import);
they read the table name, cache lifetimes and the queues' path through ``settings()`` when called,
so a test that changes the environment and clears the settings is seen at once.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.settings import ConfigurationError, Settings

_source: Callable[[], Settings] | None = None


def use_settings(source: Callable[[], Settings]) -> None:
    """The composition root's settings (a callable: the root reads the environment once, when first asked)."""
    global _source
    _source = source


def settings() -> Settings:
    if _source is None:
        raise ConfigurationError("no composition root gave the adapters their settings (shared.adapters.configuration.use_settings)")
    return _source()


__all__ = ["settings", "use_settings"]
