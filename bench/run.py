"""Run every benchmark in this folder (bench_*.py) in turn; each prints its own figures."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    only = set(sys.argv[1:])
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        print(f"== {name} ==", flush=True)
        saved = sys.argv
        sys.argv = [str(path)]  # each benchmark parses its own (default) arguments
        try:
            runpy.run_path(str(path), run_name="__main__")
        finally:
            sys.argv = saved
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
