"""The shape of the code: largest modules, largest classes, long functions, duplicate pairs.

Run: `python bench/code_shape.py [--limit N] [--over LINES]`. Reads workflow/ with `ast` (no
imports, nothing runs). Sizes are physical lines from a definition's first line (decorators
included) to its last. The duplicate count comes from the `duplicates` tool when it is on PATH
(it reads files as text and writes nothing); without it the line says so.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "workflow"


@dataclass(frozen=True)
class Sized:
    where: str
    name: str
    lines: int


def _span(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return (node.end_lineno or node.lineno) - first + 1


def measure(package: Path = PACKAGE) -> tuple[list[Sized], list[Sized], list[Sized]]:
    """Modules, classes and functions (methods and nested ones too) under `package`, by size."""
    modules: list[Sized] = []
    classes: list[Sized] = []
    functions: list[Sized] = []
    for path in sorted(package.rglob("*.py")):
        where = str(path.relative_to(ROOT))
        text = path.read_text(encoding="utf-8")
        modules.append(Sized(where, "", len(text.splitlines())))
        tree = ast.parse(text, filename=where)
        stack: list[tuple[ast.AST, str]] = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    name = prefix + child.name
                    classes.append(Sized(f"{where}:{child.lineno}", name, _span(child)))
                    stack.append((child, name + "."))
                elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    name = prefix + child.name
                    functions.append(Sized(f"{where}:{child.lineno}", name, _span(child)))
                    stack.append((child, name + "."))
                else:
                    stack.append((child, prefix))
    key = lambda s: (-s.lines, s.where)  # noqa: E731
    return sorted(modules, key=key), sorted(classes, key=key), sorted(functions, key=key)


def duplicate_pairs(root: Path = ROOT) -> str:
    """The `duplicates` tool's first line over the whole tree, or why there is none."""
    tool = shutil.which("duplicates")
    if tool is None:
        return "duplicates: tool not on PATH (record its figure by hand)"
    done = subprocess.run(  # a fixed tool path and fixed arguments
        [tool, "--repo", str(root), "--seconds", "120", "--most", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    first = done.stdout.splitlines()[0] if done.stdout else done.stderr.strip()
    found = re.match(r"(\d+) pairs", first)
    return f"duplicate pairs: {found.group(1) if found else '?'}  ({first})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=10, help="rows per table (default 10)")
    parser.add_argument("--over", type=int, default=60, help="long-function threshold (60)")
    parser.add_argument("--no-duplicates", action="store_true", help="skip the duplicates tool")
    args = parser.parse_args()
    modules, classes, functions = measure()
    print(f"largest modules (of {len(modules)} under workflow/):")
    for s in modules[: args.limit]:
        print(f"  {s.lines:5d}  {s.where}")
    print(f"largest classes (of {len(classes)}):")
    for s in classes[: args.limit]:
        print(f"  {s.lines:5d}  {s.name}  ({s.where})")
    long = [s for s in functions if s.lines > args.over]
    print(f"functions over {args.over} lines: {len(long)} (of {len(functions)})")
    for s in long:
        print(f"  {s.lines:5d}  {s.name}  ({s.where})")
    if not args.no_duplicates:
        print(duplicate_pairs())


if __name__ == "__main__":
    main()
