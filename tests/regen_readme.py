"""Regenerate README's configuration reference: ``python tests/regen_readme.py``."""

from __future__ import annotations

from pathlib import Path

from bridge.config import settings_reference

START, END = "<!-- settings-reference:start -->\n", "<!-- settings-reference:end -->"


def main() -> None:
    path = Path(__file__).resolve().parent.parent / "README.md"
    text = path.read_text()
    i, j = text.index(START) + len(START), text.index(END)
    path.write_text(text[:i] + settings_reference() + "\n" + text[j:])


if __name__ == "__main__":
    main()
