"""Where the shipped protocol files and templates are.

A wheel carries them inside the package (``workflow/_data``, see pyproject's force-include); a
source checkout or editable install reads them from the repository's top-level folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    source = _PACKAGE.parent / name
    if source.is_dir():
        return source
    raise FileNotFoundError(f"Bedside's {name}/ folder is missing from this installation")


def checklists_dir() -> Path:
    return _data_dir("checklists")


def templates_dir() -> Path:
    return _data_dir("templates")


def default_protocol_path() -> Path:
    return checklists_dir() / "aldesleukin.yaml"
