"""YAML with line numbers.

PyYAML drops positions once it builds Python objects, and silently keeps the last of two equal
keys. Protocol errors must say FILE:LINE, and a duplicated key in a clinical file is a defect,
so we compose the node graph ourselves and build dict/list subclasses that remember lines.
Only the safe tags (str, int, float, bool, null) are accepted: no Python objects, no anchors
that alias into surprise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from workflow.core.errors import ProtocolError, ProtocolIssue


class YMap(dict[str, Any]):
    """A mapping that knows its own line and the line of each key."""

    line: int
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class YList(list[Any]):
    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        if 0 <= index < len(self.item_lines):
            return self.item_lines[index]
        return self.line


_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


_MAX_NODES = 100_000


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.issues: list[ProtocolIssue] = []
        self._ctor = yaml.SafeLoader("")
        self._path: set[int] = set()
        self._budget = _MAX_NODES

    def _issue(self, node: yaml.Node, message: str) -> None:
        self.issues.append(ProtocolIssue(self.filename, node.start_mark.line + 1, message))

    def build(self, node: yaml.Node) -> Any:
        # Aliases can make a node its own ancestor or multiply a small file into a huge one.
        self._budget -= 1
        if self._budget < 0:
            if self._budget == -1:
                self._issue(node, f"the file expands to more than {_MAX_NODES} values")
            return None
        if id(node) in self._path:
            self._issue(node, "a value may not contain itself (recursive alias)")
            return None
        self._path.add(id(node))
        try:
            return self._build(node)
        finally:
            self._path.discard(id(node))

    def _build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in (
            "tag:yaml.org,2002:map",
            "tag:yaml.org,2002:seq",
        ):
            self._issue(node, f"tag {node.tag} is not allowed; use plain values")
            return None
        if isinstance(node, yaml.MappingNode):
            out = YMap()
            out.line = node.start_mark.line + 1
            out.key_lines = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self._issue(key_node, "keys must be plain words")
                    continue
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._issue(key_node, "merge keys (<<) are not allowed in a protocol")
                    continue
                key = str(key_node.value)
                if key in out:
                    self._issue(
                        key_node,
                        f"duplicate key '{key}' (first at line "
                        f"{out.key_lines[key]}); each key may appear once",
                    )
                    continue
                out.key_lines[key] = key_node.start_mark.line + 1
                out[key] = self.build(value_node)
            return out
        if isinstance(node, yaml.SequenceNode):
            seq = YList()
            seq.line = node.start_mark.line + 1
            seq.item_lines = []
            for item in node.value:
                seq.item_lines.append(item.start_mark.line + 1)
                seq.append(self.build(item))
            return seq
        if isinstance(node, yaml.ScalarNode):
            if node.tag not in _SCALAR_TAGS:
                self._issue(node, f"tag {node.tag} is not allowed; use plain values")
                return None
            if node.tag == "tag:yaml.org,2002:float":
                # Keep the written digits: clinical numbers become Decimal, never binary floats.
                return _FloatText(node.value)
            return self._ctor.construct_object(node, deep=True)
        self._issue(node, "unsupported YAML node")  # pragma: no cover - yaml has no other kinds
        return None


class _FloatText(str):
    """A YAML float kept as its source text so Decimal(value) is exact."""


def is_float_text(value: object) -> bool:
    return isinstance(value, _FloatText)


def load_located(text: str, filename: str) -> tuple[Any, list[ProtocolIssue]]:
    """Parse YAML text into YMap/YList values; return the value and any issues found."""
    try:
        # libyaml's composer keeps the same marks and is several times faster.
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "malformed YAML"
        return None, [ProtocolIssue(filename, line, f"not valid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, [ProtocolIssue(filename, 1, f"not valid YAML: {exc}")]
    if node is None:
        return None, [
            ProtocolIssue(filename, 1, "the file is empty; a protocol mapping is expected")
        ]
    builder = _Builder(filename)
    value = builder.build(node)
    return value, builder.issues


def read_file(path: str | Path) -> bytes:
    """A protocol or overlay file's bytes; ProtocolError (line 0) when it cannot be read."""
    p = Path(path)
    try:
        return p.read_bytes()
    except OSError as exc:
        raise ProtocolError(
            [ProtocolIssue(str(p), 0, f"cannot read the file: {exc.strerror or exc}")]
        ) from exc


def load_document(data: bytes, filename: str) -> Any:
    """The located YAML root of a protocol or overlay file; ProtocolError when the bytes are
    not UTF-8 text or not YAML."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ProtocolError([ProtocolIssue(filename, line, "the file is not UTF-8 text")]) from exc
    root, yaml_issues = load_located(text, filename)
    if root is None or yaml_issues:
        raise ProtocolError(yaml_issues)
    return root
