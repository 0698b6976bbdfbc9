"""Tests of ``[[accounts]]`` (bridge.account_config, bridge.credentials): SPEC §7, §8.

Credentials come from the environment (passed explicitly as ``env=``) or from files; every
refusal names the file, the key and a fix, and no message, repr or str ever holds a
credential.
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.account_config import Account
from bridge.config import Config, load, settings_reference
from bridge.credentials import Secret, fingerprint
from bridge.errors import ConfigError

KEY, SECRET = (
    "kEyAbCdEf0123456789kEyAbCdEf0123456789kEyAb",
    "sEcReTaBc0123456789sEcReTaBc0123456789sEcRe",
)
ENV = {"BFX_MAIN_KEY": KEY, "BFX_MAIN_SECRET": SECRET}
GROUP = """
[[groups]]
name = "majors"
symbols = ["tBTCUSD"]
channels = ["ticker"]
"""
SPEC_ACCOUNT = """
[[accounts]]
name = "main"
group = "majors"
api_key_env = "BFX_MAIN_KEY"
api_secret_env = "BFX_MAIN_SECRET"
filter = ["trading", "wallet"]
dms = false
"""


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return load(str(path), env=ENV if env is None else env)


def refusal(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    """Load expecting a ConfigError that names the file, has a fix and leaks nothing."""
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text, env)
    err = info.value
    assert err.path == str(tmp_path / "bridge.toml") and err.fix
    assert KEY not in str(err) and SECRET not in str(err)
    return err


def account_table(**keys: object) -> str:
    """An [[accounts]] table: the SPEC example's keys, overridden or removed (None)."""
    fields: dict[str, object] = {"name": "main", "group": "majors",
                                 "api_key_env": "BFX_MAIN_KEY",
                                 "api_secret_env": "BFX_MAIN_SECRET"}  # fmt: skip
    fields.update(keys)
    lines = [f"{k} = {_toml(v)}" for k, v in fields.items() if v is not None]
    return GROUP + "[[accounts]]\n" + "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else str(value)


def test_spec_example_loads_with_credentials_from_the_environment(tmp_path: Path) -> None:
    """SPEC §8's example: one account on group majors, filter and dms as written."""
    config = load_text(tmp_path, GROUP + SPEC_ACCOUNT)
    (account,) = config.accounts
    assert (account.name, account.group, account.filter, account.dms) == (
        "main",
        "majors",
        ("trading", "wallet"),
        False,
    )
    assert account.api_key.reveal() == KEY and account.api_secret.reveal() == SECRET
    assert (account.key_source, account.secret_source) == ("$BFX_MAIN_KEY", "$BFX_MAIN_SECRET")
    assert config.accounts_of("majors") == (account,) and config.accounts_of("other") == ()
    assert config["bitfinex.auth_url"] == "wss://api.bitfinex.com/ws/2"


def test_no_text_form_of_the_config_holds_a_credential(tmp_path: Path) -> None:
    """repr/str of the config and the account show *** in place of key and secret."""
    config = load_text(tmp_path, GROUP + SPEC_ACCOUNT)
    for text in (repr(config), str(config), repr(config.accounts), f"{config.accounts[0]}"):
        assert KEY not in text and SECRET not in text
    assert "api_secret=***" in repr(config.accounts[0])


def test_credentials_from_files_are_stripped(tmp_path: Path) -> None:
    """api_key_file / api_secret_file: the file's text without the trailing newline."""
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "secret").write_text(SECRET + "\n")
    text = account_table(api_key_env=None, api_secret_env=None,
                         api_key_file=str(tmp_path / "key"),
                         api_secret_file=str(tmp_path / "secret"))  # fmt: skip
    (account,) = load_text(tmp_path, text, env={}).accounts
    assert account.api_key.reveal() == KEY and account.api_secret.reveal() == SECRET
    assert account.secret_source == str(tmp_path / "secret")


@pytest.mark.parametrize("inline", ["api_key", "api_secret"])
def test_an_inline_credential_is_refused_with_how_to_pass_it(tmp_path: Path, inline: str) -> None:
    """api_key/api_secret in the file: refused, the fix names _env and _file, no value shown."""
    err = refusal(tmp_path, account_table(**{inline: SECRET if "secret" in inline else KEY}))
    assert err.key == f"accounts[0].{inline}"
    assert f"{inline}_env" in err.fix and f"{inline}_file" in err.fix and "rotate" in err.fix


def test_a_missing_environment_variable_is_named(tmp_path: Path) -> None:
    """The variable that is not set is named, with how to set it."""
    err = refusal(tmp_path, GROUP + SPEC_ACCOUNT, env={"BFX_MAIN_KEY": KEY})
    assert err.key == "accounts[0].api_secret_env"
    assert err.problem == "environment variable $BFX_MAIN_SECRET is not set"
    assert "export" in err.fix
    err = refusal(tmp_path, GROUP + SPEC_ACCOUNT, env={**ENV, "BFX_MAIN_KEY": " "})
    assert err.problem == "environment variable $BFX_MAIN_KEY is empty"


def test_a_credential_pasted_as_a_variable_name_is_not_echoed(tmp_path: Path) -> None:
    """api_secret_env = "<the secret>": the error does not repeat it."""
    err = refusal(tmp_path, account_table(api_secret_env=SECRET))
    assert "the variable named there is not set" in err.problem
    err = refusal(tmp_path, account_table(api_secret_env="not a name!"))
    assert err.problem == "is not an environment variable name"


@pytest.mark.parametrize(
    ("keys", "key", "problem"),
    [
        ({"group": "minors"}, "accounts[0].group", "no group named 'minors'"),
        ({"name": "Main"}, "accounts[0].name", "'Main' is not an account name"),
        ({"name": "a b"}, "accounts[0].name", "'a b' is not an account name"),
        ({"api_key_env": None}, "accounts[0].api_key_env", "the API key is missing"),
        ({"api_secret_file": "/x"}, "accounts[0].api_secret_env",
         "the API secret is given both ways"),
        ({"filter": ["trading", "orders"]}, "accounts[0].filter",
         "'orders' is not a Bitfinex auth filter"),
        ({"filter": "trading"}, "accounts[0].filter", "must be a list of strings"),
        ({"filter": ["wallet", "wallet"]}, "accounts[0].filter", "lists an entry twice"),
        ({"dms": 4}, "accounts[0].dms", "must be true or false"),
        ({"api_secrets_env": "X"}, "accounts[0].api_secrets_env", "unknown key"),
    ],
)  # fmt: skip
def test_bad_account_entries_are_refused(
    tmp_path: Path, keys: dict[str, object], key: str, problem: str
) -> None:
    """Each mistake names the key and the problem."""
    err = refusal(tmp_path, account_table(**keys))
    assert (err.key, err.problem) == (key, problem)


def test_unknown_group_fix_lists_the_groups(tmp_path: Path) -> None:
    """The fix of an unknown group lists the [[groups]] names."""
    assert "majors" in refusal(tmp_path, account_table(group="minors")).fix


def test_unreadable_or_empty_credential_files_are_refused(tmp_path: Path) -> None:
    """A missing file, or an empty one: refused naming the file."""
    err = refusal(tmp_path, account_table(api_secret_env=None, api_secret_file="/nonexistent/s"))
    assert err.problem == "cannot read /nonexistent/s (No such file or directory)"
    (tmp_path / "empty").write_text("\n")
    err = refusal(tmp_path, account_table(api_secret_env=None,
                                          api_secret_file=str(tmp_path / "empty")))  # fmt: skip
    assert err.problem.endswith("is empty")


def test_duplicate_account_names_are_refused(tmp_path: Path) -> None:
    """Two accounts called main: refused."""
    text = account_table() + SPEC_ACCOUNT
    assert refusal(tmp_path, text).problem == "duplicate account 'main'"


def test_a_group_may_serve_accounts_only(tmp_path: Path) -> None:
    """A group with no symbols is fine when an account uses it; empty otherwise refused."""
    text = '[[groups]]\nname = "acct"\n' + SPEC_ACCOUNT.replace("majors", "acct")
    config = load_text(tmp_path, text)
    assert config.groups[0].subscriptions == () and config.accounts[0].group == "acct"
    err = refusal(tmp_path, '[[groups]]\nname = "acct"\n')
    assert err.problem == "has neither symbols, status keys nor accounts"


def test_auth_url_has_its_own_environment_override(tmp_path: Path) -> None:
    """[bitfinex] auth_url; BFX_BRIDGE_AUTH_URL overrides it."""
    config = load_text(tmp_path, GROUP, env={"BFX_BRIDGE_AUTH_URL": "ws://127.0.0.1:9/ws/2"})
    assert config["bitfinex.auth_url"] == "ws://127.0.0.1:9/ws/2"
    assert "`accounts[].api_secret_file`" in settings_reference()
    assert "`bitfinex.auth_url`" in settings_reference()


def test_secret_has_no_text_form_and_no_serialisation() -> None:
    """str, repr, format are ***; pickle and deepcopy refuse; equality by value."""
    secret = Secret(SECRET)
    texts = (str(secret), repr(secret), f"{secret}", f"{secret!r}", f"{secret:>10}")
    assert texts == ("***",) * 5 and "%s" % (secret,) == "***"  # noqa: UP031
    for serialise in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError, match="not serialisable"):
            serialise(secret)
    assert secret == Secret(SECRET) and secret != Secret("other") and secret != SECRET
    assert len(fingerprint(secret)) == 16 and fingerprint(secret) not in SECRET
    account = Account("a", "g", secret, secret, "$A", "$B")
    assert SECRET not in repr(account) and hash(account) == hash(
        Account("a", "g", secret, secret, "$A", "$B")
    )


def test_the_worker_refuses_to_start_without_its_credentials(tmp_path: Path) -> None:
    """`bfx-bridge worker` with the secret's variable unset: exit 2, the variable named."""
    path = tmp_path / "bridge.toml"
    path.write_text(GROUP + SPEC_ACCOUNT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    env["BFX_MAIN_KEY"] = KEY
    done = subprocess.run([sys.executable, "-m", "bridge", "worker", "-c", str(path), "--group",
                           "majors"], capture_output=True, text=True, env=env, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "accounts[0].api_secret_env: environment variable $BFX_MAIN_SECRET is not set" in (
        done.stderr
    )
    assert KEY not in done.stderr + done.stdout


def test_commands_that_never_authenticate_load_without_credentials(tmp_path: Path) -> None:
    """load(credentials=False) (status, tail): accounts checked, nothing read; an inline
    secret is still refused."""
    path = tmp_path / "bridge.toml"
    path.write_text(GROUP + SPEC_ACCOUNT)
    (account,) = load(str(path), env={}, credentials=False).accounts
    assert not account.api_key and not account.api_secret
    assert account.secret_source == "$BFX_MAIN_SECRET"
    path.write_text(account_table(api_secret=SECRET))
    with pytest.raises(ConfigError, match="must not be written"):
        load(str(path), env={}, credentials=False)
