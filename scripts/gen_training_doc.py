"""Regenerate the key reference of docs/training.md from the config dataclasses.

    python scripts/gen_training_doc.py          # rewrite the generated part of the file
    python scripts/gen_training_doc.py --check  # exit 1 when the file is out of date
"""

from __future__ import annotations

import argparse
import sys

from lesion_studio.models.config_doc import DOC_PATH, render


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or check) docs/training.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the file is current")
    args = parser.parse_args(argv)
    current = DOC_PATH.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if current != wanted:
            print(f"{DOC_PATH} is out of date: run python scripts/gen_training_doc.py", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        DOC_PATH.write_text(wanted, encoding="utf-8")
        print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
