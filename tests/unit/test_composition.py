"""Settings are read in the composition roots only; everything else is given them (issue 10)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("api", "functions", "shared", "processors")

# The containers' composition roots: they read the settings once, build the services and give the
# module-level adapters (counters, policies, the queue directory) their settings
# (shared/adapters/configuration.py). Nothing else reads the environment.
COMPOSITION_ROOTS = {"functions/composition.py", "functions/realtime/services.py", "api/deps.py"}


def _modules_naming(name: str) -> set[str]:
    found: set[str] = set()
    for folder in SHIPPED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                named = (isinstance(node, ast.Name) and node.id == name) or (isinstance(node, ast.Attribute) and node.attr == name)
                imported = isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names)
                if named or imported:
                    found.add(str(path.relative_to(ROOT)))
    return found


def test_only_the_composition_roots_read_the_settings_from_the_environment() -> None:
    readers = _modules_naming("get_settings") - {"shared/settings.py"}

    assert readers == COMPOSITION_ROOTS


def test_every_composition_root_gives_the_module_level_adapters_their_settings() -> None:
    """The counters, policies and queue directory are called as modules: each container's root gives them
    the settings when it is imported, so no function reads them before its root was built."""
    for root in COMPOSITION_ROOTS:
        assert "use_settings(get_settings)" in (ROOT / root).read_text(), root
    assert _modules_naming("use_settings") - {"shared/adapters/configuration.py"} == COMPOSITION_ROOTS


def test_every_handler_leaves_building_its_services_to_its_composition_root() -> None:
    """A handler parses its event and calls a service; it neither reads settings nor caches what it builds."""
    for path in sorted((ROOT / "functions").rglob("handler.py")):
        source = path.read_text()
        assert "get_settings" not in source and "lru_cache" not in source, path


def test_no_shipped_module_moves_the_clock_but_the_local_stack() -> None:
    """The clock is passed to the composition roots (``use_clock``) by processes that run on a clock of
    their own (infra/local, bench); ``shared.clock`` has no switch left, and nothing shipped calls one."""
    import shared.clock

    assert not hasattr(shared.clock, "use")
    movers = set()
    for folder in SHIPPED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "use":
                    target = node.func.value
                    if (isinstance(target, ast.Name) and target.id in {"clock", "clocks"}) or (isinstance(target, ast.Attribute) and target.attr == "clock"):
                        movers.add(str(path.relative_to(ROOT)))
    assert movers == set()
