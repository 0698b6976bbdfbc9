"""``[[accounts]]``: authenticated accounts, their credentials, validated up front (SPEC §8).

::

    [[accounts]]
    name = "main"                       # [a-z0-9_-]+, unique
    group = "majors"                    # the worker that serves it
    api_key_env = "BFX_MAIN_KEY"        # or api_key_file = "/run/secrets/bfx_key"
    api_secret_env = "BFX_MAIN_SECRET"  # or api_secret_file = "/run/secrets/bfx_secret"
    filter = ["trading", "wallet"]      # optional Bitfinex auth filter
    dms = false                         # optional dead-man switch

Credentials come only from the environment or from files; a config that writes them inline
is refused with a message saying how to pass them (SPEC §7). They are loaded here, once,
into :class:`~bridge.credentials.Secret` values, so a missing variable or an unreadable file
stops the worker before anything connects, and no error message ever contains a credential:
messages name the variable or the file, never the value.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.credentials import Secret
from bridge.errors import ConfigError

__all__ = ["ACCOUNT_KEYS", "FILTERS", "Account", "parse_accounts"]

ACCOUNT_KEYS = {
    "name": "Account name ([a-z0-9_-]+, unique); streams are {prefix}:account:{name}:{kind}.",
    "group": "The group whose worker serves the account (it gets a connection of its own).",
    "api_key_env": "Environment variable holding the API key (or api_key_file).",
    "api_key_file": "File holding the API key (or api_key_env).",
    "api_secret_env": "Environment variable holding the API secret (or api_secret_file).",
    "api_secret_file": "File holding the API secret (or api_secret_env).",
    "filter": 'Bitfinex auth filter, e.g. ["trading", "wallet"] (default: everything).',
    "dms": "Dead-man switch: Bitfinex cancels every order of the account when the "
    "connection closes, reconnects included (default false).",
}

# bitfinex-ws-v2.md §8.1: `trading`, `trading-tBTCUSD`, `funding`, `funding-fUSD`, `wallet`,
# `wallet-exchange-BTC`, `algo`, `balance`, `notify`.
FILTERS = ("trading", "funding", "wallet", "algo", "balance", "notify")
_FILTER = re.compile(r"(?:trading|funding|wallet)(?:-[A-Za-z0-9:_-]+)?|algo|balance|notify")
_NAME = re.compile(r"[a-z0-9_-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHOWN_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*|[A-Za-z_][A-Za-z0-9_]{0,31}")


@dataclass(frozen=True, slots=True)
class Account:
    """One ``[[accounts]]`` entry with its credentials loaded.

    Attributes:
        name: the account's name, part of its stream keys.
        group: the group whose worker serves it.
        api_key, api_secret: the credentials; their text form is ``***``.
        key_source, secret_source: where they came from (``$VAR`` or a file path), for
            messages that tell the operator what to check.
        filter: the Bitfinex auth filter; empty for everything.
        dms: ask for the dead-man switch (``dms: 4``).
    """

    name: str
    group: str
    api_key: Secret
    api_secret: Secret
    key_source: str
    secret_source: str
    filter: tuple[str, ...] = ()
    dms: bool = False


def parse_accounts(
    path: str, raw: Any, groups: tuple[str, ...], env: Mapping[str, str], load: bool = True
) -> tuple[Account, ...]:
    """Validate every ``[[accounts]]`` table and load its credentials (unless ``load`` is
    False: then each credential is an empty :class:`Secret`, for commands that never
    authenticate)."""
    if not isinstance(raw, list):
        raise ConfigError(path, "accounts", "must be a list of tables", "write [[accounts]]")
    accounts: list[Account] = []
    for index, table in enumerate(raw):
        where = f"accounts[{index}]"
        if not isinstance(table, dict):
            raise ConfigError(path, where, "must be a table", "write [[accounts]]")
        account = _account(path, where, table, groups, env if load else None)
        if any(a.name == account.name for a in accounts):
            raise ConfigError(
                path,
                f"{where}.name",
                f"duplicate account {account.name!r}",
                "give every account its own name",
            )
        accounts.append(account)
    return tuple(accounts)


def _account(
    path: str,
    where: str,
    table: dict[str, Any],
    groups: tuple[str, ...],
    env: Mapping[str, str] | None,
) -> Account:
    for inline in ("api_key", "api_secret"):
        if inline in table:  # never echo the value: it is a credential
            raise ConfigError(
                path, f"{where}.{inline}", "credentials must not be written in the config file",
                f"remove {inline} (and consider the credential exposed: rotate it), then pass "
                f"it in an environment variable named by {inline}_env = \"BFX_MAIN_"
                f"{inline.split('_')[1].upper()}\" or in a file readable only by the bridge, "
                f"named by {inline}_file = \"/run/secrets/bfx_{inline.split('_')[1]}\"",
            )  # fmt: skip
    for key in table:
        if key not in ACCOUNT_KEYS:
            _unknown(path, f"{where}.{key}", key, where)
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            path,
            f"{where}.name",
            f"{name!r} is not an account name",
            'use lower-case letters, digits, - and _, e.g. name = "main"',
        )
    group = table.get("group")
    if group not in groups:
        known = ", ".join(groups) or "none"
        raise ConfigError(
            path,
            f"{where}.group",
            f"no group named {group!r}",
            f"set group to one of the [[groups]] names: {known}",
        )
    assert isinstance(group, str)
    api_key, key_source = _credential(path, where, table, "api_key", env)
    api_secret, secret_source = _credential(path, where, table, "api_secret", env)
    dms = table.get("dms", False)
    if not isinstance(dms, bool):
        raise ConfigError(path, f"{where}.dms", "must be true or false", "dms = false")
    return Account(
        name,
        group,
        api_key,
        api_secret,
        key_source,
        secret_source,
        _filter(path, where, table.get("filter", [])),
        dms,
    )


def _unknown(path: str, key: str, leaf: str, where: str) -> None:
    close = difflib.get_close_matches(leaf, list(ACCOUNT_KEYS), n=1)
    fix = f"did you mean {where}.{close[0]}?" if close else f"known keys: {', '.join(ACCOUNT_KEYS)}"
    raise ConfigError(path, key, "unknown key", fix)


def _credential(
    path: str, where: str, table: dict[str, Any], what: str, env: Mapping[str, str] | None
) -> tuple[Secret, str]:
    """Load ``api_key``/``api_secret`` from ``{what}_env`` or ``{what}_file`` (with ``env``
    None, only check how it is given)."""
    by_env, by_file = table.get(f"{what}_env"), table.get(f"{what}_file")
    label = "API key" if what == "api_key" else "API secret"
    if (by_env is None) == (by_file is None):
        problem = "is given both ways" if by_env is not None else "is missing"
        raise ConfigError(
            path,
            f"{where}.{what}_env",
            f"the {label} {problem}",
            f'set exactly one of {what}_env = "VARIABLE" (an environment '
            f'variable holding it) or {what}_file = "/path/to/file"',
        )
    if by_env is not None:
        return _from_env(path, f"{where}.{what}_env", by_env, label, env)
    if env is None:
        if not isinstance(by_file, str) or not by_file:
            raise ConfigError(path, f"{where}.{what}_file", "must be a file path",
                              'e.g. "/run/secrets/bfx_secret"')  # fmt: skip
        return Secret(""), by_file
    return _from_file(path, f"{where}.{what}_file", by_file, label)


def _from_env(
    path: str, key: str, name: Any, label: str, env: Mapping[str, str] | None
) -> tuple[Secret, str]:
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise ConfigError(
            path,
            key,
            "is not an environment variable name",
            'name the variable (letters, digits, _), e.g. "BFX_MAIN_SECRET"; '
            "the value is not shown in case it is the credential itself",
        )
    # A long mixed-case "name" may be the credential pasted by mistake: do not echo it.
    shown = f"${name}" if _SHOWN_ENV_NAME.fullmatch(name) else "the variable named there"
    if env is None:
        return Secret(""), shown
    value = env.get(name)
    if value is None or not value.strip():
        problem = "is not set" if value is None else "is empty"
        raise ConfigError(
            path,
            key,
            f"environment variable {shown} {problem}",
            f"export it with the account's {label} in the worker's environment "
            f"(systemd Environment=, docker -e, a Kubernetes secret), or use a "
            f"file instead",
        )
    return Secret(value.strip()), shown


def _from_file(path: str, key: str, name: Any, label: str) -> tuple[Secret, str]:
    if not isinstance(name, str) or not name:
        raise ConfigError(path, key, "must be a file path", 'e.g. "/run/secrets/bfx_secret"')
    try:
        with open(name, encoding="utf-8") as fh:
            value = fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            path,
            key,
            f"cannot read {name} ({reason})",
            f"make it a file readable by the bridge holding only the {label}",
        ) from None
    if not value:
        raise ConfigError(path, key, f"{name} is empty", f"write the {label} into it")
    return Secret(value), name


def _filter(path: str, where: str, value: Any) -> tuple[str, ...]:
    key = f"{where}.filter"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(path, key, "must be a list of strings", 'filter = ["trading", "wallet"]')
    for item in value:
        if not _FILTER.fullmatch(item):
            raise ConfigError(
                path,
                key,
                f"{item!r} is not a Bitfinex auth filter",
                f"use {', '.join(FILTERS)}, or trading-SYMBOL, funding-SYMBOL, "
                "wallet-TYPE-CURRENCY (bitfinex-ws-v2.md §8.1)",
            )
    if len(set(value)) != len(value):
        raise ConfigError(path, key, "lists an entry twice", "remove the duplicate")
    return tuple(value)
