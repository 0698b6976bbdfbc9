"""The docs stay in step with the code they describe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bridge.config import load, settings_reference

ROOT = Path(__file__).resolve().parent.parent


def test_readme_configuration_reference_is_generated_from_the_settings_table() -> None:
    """README's key reference equals settings_reference() (regenerate it if this fails)."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- settings-reference:start -->\n") + len(
        "<!-- settings-reference:start -->\n"
    )
    end = readme.index("<!-- settings-reference:end -->")
    assert readme[start:end].strip() == settings_reference()


def test_readme_test_command_is_what_ci_runs() -> None:
    """.ci/run runs exactly the README's test command."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash tests/run.sh" in readme
    assert "exec bash tests/run.sh" in ci


def test_shipped_example_config_is_valid() -> None:
    """deploy/bridge.toml loads without a ConfigError."""
    config = load(str(ROOT / "deploy" / "bridge.toml"), env={})
    assert [g.name for g in config.groups] == ["majors"]
    assert len(config.groups[0].subscriptions) == 14


def test_every_command_has_readable_help() -> None:
    """--help of the tool and of each command exits 0 and describes the command."""
    for args, phrase in [
        ([], "Redis Streams"),
        (["worker"], "SIGTERM"),
        (["tail"], "JSON lines"),
        (["emulator"], "Bitfinex-compatible"),
    ]:
        out = subprocess.run(
            [sys.executable, "-m", "bridge", *args, "--help"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
        assert phrase in out, (args, out)
        assert "usage: bfx-bridge" in out
