"""Names a light module exports but loads only when first used (PEP 562), so that
``import workflow.cli`` does not pull in SQLAlchemy, pyHanko or the service itself."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    module_name: str, where: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__``: ``where`` maps each exported name to the module defining it;
    the value is imported on first use and kept in ``namespace`` (the module's globals)."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
