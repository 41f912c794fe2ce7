"""`python -m localbench.config.check [params.yaml]`: validate the configuration before running anything.

Prints every error, one line each, and exits 1; prints one `ok` line and exits 0 when the file is valid.
"""
from __future__ import annotations

import sys
from pathlib import Path

from localbench.config.params import load
from localbench.config.schema import all_errors


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else Path("params.yaml")
    errors = all_errors(load(path))
    for line in errors:
        print(line, file=sys.stderr)
    if not errors:
        print(f"{path}: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
