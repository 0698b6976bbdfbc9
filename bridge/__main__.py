"""``python -m bridge`` behaves the same as ``bfx-bridge``."""

from bridge.cli import main

raise SystemExit(main())
