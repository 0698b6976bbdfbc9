"""Configuration: TOML plus ``BFX_BRIDGE_*`` environment overrides, validated up front.

One :data:`SETTINGS` table drives parsing, defaults, environment overrides and the README's
configuration reference (``python -m bridge.config`` prints it). A bad config raises
:class:`~bridge.errors.ConfigError` naming the file, the key and the fix, before anything
connects (SPEC §2).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.account_config import ACCOUNT_KEYS, Account, parse_accounts
from bridge.errors import ConfigError
from bridge.log import redact
from bridge.subscription import (
    Subscription,
    SubscriptionSyntaxError,
    is_valid_symbol,
    parse_channel,
    parse_status,
)

__all__ = ["SETTINGS", "Config", "Group", "Setting", "load", "settings_reference"]


@dataclass(frozen=True, slots=True)
class Setting:
    """One scalar configuration key of a ``[section]``."""

    section: str
    key: str
    type: type
    default: Any
    doc: str
    env: str = ""
    minimum: float | None = None
    pattern: str = ""  # a str setting must match it (whole value)

    @property
    def env_name(self) -> str:
        """The environment variable that overrides this key."""
        return self.env or f"BFX_BRIDGE_{self.section}_{self.key}".upper()


WS_URL = r"wss?://\S+"
REDIS_URL = r"(?:rediss?|unix)://\S+|embedded"

SETTINGS: tuple[Setting, ...] = (
    Setting("bitfinex", "url", str, "wss://api-pub.bitfinex.com/ws/2",
            "WebSocket v2 endpoint.", env="BFX_BRIDGE_WS_URL", pattern=WS_URL),
    Setting("bitfinex", "auth_url", str, "wss://api.bitfinex.com/ws/2",
            "WebSocket v2 endpoint of the [[accounts]] connections (authenticated).",
            env="BFX_BRIDGE_AUTH_URL", pattern=WS_URL),
    Setting("bitfinex", "channel_limit", int, 25,
            "Most channels subscribed on one connection (Bitfinex allows 25).", minimum=1),
    Setting("bitfinex", "connections_per_minute", int, 20,
            "New connections opened per minute at most (Bitfinex refuses more with HTTP 429).",
            minimum=1),
    Setting("bitfinex", "channel_timeout", float, 30.0,
            "Seconds without data or heartbeat before a channel is resubscribed.", minimum=1),
    Setting("bitfinex", "connection_timeout", float, 20.0,
            "Seconds without any frame (nor pong) before a connection is dropped and reopened.",
            minimum=1),
    Setting("bitfinex", "ping_interval", float, 10.0,
            "Seconds between ping events sent on each connection.", minimum=0.1),
    Setting("bitfinex", "throttle_wait", float, 15.0,
            "Least wait before reconnecting after an HTTP 429 (too many connections).",
            minimum=0),
    Setting("bitfinex", "verify_checksums", bool, True,
            "Verify every book's CRC32 checksum; a mismatch resets and resubscribes the book."),
    Setting("redis", "url", str, "redis://127.0.0.1:6379/0",
            "Redis URL (redis://, rediss://, unix://, with password), or \"embedded\".",
            env="BFX_BRIDGE_REDIS_URL", pattern=REDIS_URL),
    Setting("redis", "prefix", str, "bfx", "Prefix of every key the bridge writes."),
    Setting("redis", "maxlen", int, 100_000,
            "Approximate length each stream is trimmed to (XADD MAXLEN ~).", minimum=1),
    Setting("redis", "batch", int, 500, "Most entries sent in one pipeline.", minimum=1),
    Setting("redis", "buffer", int, 100_000,
            "Most entries held while Redis is unavailable; past it the oldest are dropped.",
            minimum=1),
    Setting("health", "interval", float, 2.0,
            "Seconds between health-key refreshes; the key expires after three.", minimum=0.1),
    Setting("metrics", "port", int, 0,
            "Serve Prometheus /metrics on this port + the group's index in the config (0 = off).",
            minimum=0),
    Setting("metrics", "host", str, "127.0.0.1",
            "Address the metrics server binds (0.0.0.0 in a container).", minimum=None),
    Setting("supervisor", "startsecs", float, 30.0,
            "Seconds a worker must run for its restart backoff to reset.", minimum=0),
    Setting("supervisor", "backoff_max", float, 60.0,
            "Longest wait before restarting a worker that keeps dying.", minimum=0.1),
    Setting("supervisor", "stop_timeout", float, 8.0,
            "Seconds workers get to stop on SIGTERM before SIGKILL.", minimum=0.5),
)  # fmt: skip

GROUP_KEYS = {
    "name": "Group name, unique; the worker runs with --group NAME.",
    "symbols": "Bitfinex symbols: tBTCUSD, tTESTBTC:TESTUSD, fUSD.",
    "channels": "Channels for every symbol: ticker, trades, book[:PREC[:FREQ[:LEN]]], "
    "candles[:TF[:aggregates]].",
    "status": "Status channel keys: deriv:SYMBOL, liq:global.",
    "trades_tu": "Publish `tu` trade updates too (default false: only executed trades).",
}
DEFAULT_CHANNELS = ("ticker", "trades", "book", "candles")


@dataclass(frozen=True, slots=True)
class Group:
    """A symbol group: one worker process and its subscriptions."""

    name: str
    subscriptions: tuple[Subscription, ...]
    trades_tu: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    path: str
    settings: Mapping[str, Any]
    groups: tuple[Group, ...] = field(default_factory=tuple)
    accounts: tuple[Account, ...] = field(default_factory=tuple)

    def __getitem__(self, name: str) -> Any:
        """``config["redis.url"]``: a setting's effective value."""
        return self.settings[name]

    def group(self, name: str) -> Group:
        """The group called ``name``; ConfigError naming the known ones otherwise."""
        for group in self.groups:
            if group.name == name:
                return group
        known = ", ".join(g.name for g in self.groups) or "none"
        raise ConfigError(self.path, "groups", f"no group named {name!r}", f"use one of: {known}")

    def accounts_of(self, group: str) -> tuple[Account, ...]:
        """The ``[[accounts]]`` served by ``group``'s worker, in config order."""
        return tuple(a for a in self.accounts if a.group == group)


def load(path: str, env: Mapping[str, str] | None = None, *, credentials: bool = True) -> Config:
    """Read and validate ``path``; environment overrides win over the file.

    ``credentials=False`` checks ``[[accounts]]`` without reading their keys and secrets
    (commands that never authenticate, such as ``status``, run without them).
    """
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "-", "file not found", "pass an existing file with -c") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "-", f"not valid TOML ({exc})", "fix the syntax") from None
    return parse(data, path, os.environ if env is None else env, credentials=credentials)


def parse(
    data: Mapping[str, Any], path: str, env: Mapping[str, str], *, credentials: bool = True
) -> Config:
    """Validate an already-parsed TOML document (see :func:`load`)."""
    sections = {s.section for s in SETTINGS}
    for name in data:
        if name not in sections and name not in ("groups", "accounts"):
            _unknown(path, name, [*sections, "groups", "accounts"])
    settings = {}
    for setting in SETTINGS:
        table = data.get(setting.section, {})
        if not isinstance(table, dict):
            raise ConfigError(
                path, setting.section, "must be a table", f"write [{setting.section}]"
            )
        for key in table:
            if not any(s.section == setting.section and s.key == key for s in SETTINGS):
                known = [s.key for s in SETTINGS if s.section == setting.section]
                _unknown(path, f"{setting.section}.{key}", known, prefix=f"{setting.section}.")
        name = f"{setting.section}.{setting.key}"
        if setting.env_name in env:
            source = f" (from ${setting.env_name})"
            settings[name] = _coerce(path, name, setting, env[setting.env_name], source)
        else:
            value = table.get(setting.key, setting.default)
            _check_type(path, name, setting, value)
            settings[name] = _coerce(path, name, setting, value)
    groups = _groups(path, data.get("groups", []))
    names = tuple(g.name for g in groups)
    accounts = parse_accounts(path, data.get("accounts", []), names, env, credentials)
    for index, group in enumerate(groups):
        if not group.subscriptions and not any(a.group == group.name for a in accounts):
            raise ConfigError(
                path,
                f"groups[{index}]",
                "has neither symbols, status keys nor accounts",
                'add symbols = ["tBTCUSD"], status = '
                '["liq:global"] or an [[accounts]] entry with this group',
            )
    return Config(path, settings, groups, accounts)


def _unknown(path: str, key: str, known: list[str], prefix: str = "") -> None:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1)
    fix = f"did you mean {prefix}{close[0]}?" if close else f"known keys: {', '.join(known)}"
    raise ConfigError(path, key, "unknown key", fix)


def _check_type(path: str, name: str, setting: Setting, value: Any) -> None:
    """TOML values must already have the setting's type (ints are fine for floats)."""
    allowed: tuple[type, ...] = (int, float) if setting.type is float else (setting.type,)
    if (isinstance(value, bool) and setting.type is not bool) or not isinstance(value, allowed):
        raise ConfigError(
            path, name, f"{value!r} is not a {setting.type.__name__}",
            f"write e.g. {setting.key} = {_toml(setting.default)}",
        )  # fmt: skip


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else str(value)


def _coerce(path: str, name: str, setting: Setting, raw: Any, source: str = "") -> Any:
    try:
        if setting.type is bool:
            value: Any = raw if isinstance(raw, bool) else _parse_bool(str(raw))
        elif setting.type in (int, float) and isinstance(raw, bool):
            raise ValueError(raw)
        else:
            value = setting.type(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            path,
            name,
            f"{raw!r}{source} is not a {setting.type.__name__}",
            f"e.g. {setting.default!r}",
        ) from None
    if setting.minimum is not None and value < setting.minimum:
        raise ConfigError(path, name, f"{value} is too small", f"use at least {setting.minimum}")
    if setting.type is str and not value:
        raise ConfigError(path, name, "is empty", f"e.g. {setting.default!r}")
    if setting.pattern and not re.fullmatch(setting.pattern, value):
        shown = redact(value)
        raise ConfigError(path, name, f"{shown!r}{source} is not a URL of the right kind",
                          f"e.g. {setting.default!r}")  # fmt: skip
    return value


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _groups(path: str, raw: Any) -> tuple[Group, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(path, "groups", "no [[groups]] defined", "add at least one [[groups]]")
    groups: list[Group] = []
    owner: dict[str, str] = {}  # symbol or status key -> group name
    for index, table in enumerate(raw):
        where = f"groups[{index}]"
        if not isinstance(table, dict):
            raise ConfigError(path, where, "must be a table", "write [[groups]]")
        group = _group(path, where, table)
        if any(g.name == group.name for g in groups):
            raise ConfigError(path, f"{where}.name", f"duplicate group {group.name!r}",
                              "give every group its own name")  # fmt: skip
        for sub in group.subscriptions:
            item = sub.key if sub.channel == "status" else sub.symbol
            if owner.setdefault(item, group.name) != group.name:
                raise ConfigError(
                    path, where, f"{item} is in groups {owner[item]!r} and {group.name!r}",
                    "list each symbol and status key in one group only (one worker publishes "
                    "each stream)",
                )  # fmt: skip
        groups.append(group)
    return tuple(groups)


def _group(path: str, where: str, table: dict[str, Any]) -> Group:
    for key in table:
        if key not in GROUP_KEYS:
            _unknown(path, f"{where}.{key}", list(GROUP_KEYS), prefix=f"{where}.")
    name = table.get("name")
    if (
        not isinstance(name, str)
        or not name
        or not name.replace("-", "").replace("_", "").isalnum()
    ):
        raise ConfigError(path, f"{where}.name", f"{name!r} is not a group name",
                          "use letters, digits, - and _, e.g. name = \"majors\"")  # fmt: skip
    symbols = _strings(path, f"{where}.symbols", table.get("symbols", []))
    channels = _strings(path, f"{where}.channels", table.get("channels", list(DEFAULT_CHANNELS)))
    status = _strings(path, f"{where}.status", table.get("status", []))
    trades_tu = table.get("trades_tu", False)
    if not isinstance(trades_tu, bool):
        raise ConfigError(path, f"{where}.trades_tu", "must be true or false", "trades_tu = false")
    for symbol in symbols:
        if not is_valid_symbol(symbol):
            raise ConfigError(
                path, f"{where}.symbols", f"{symbol!r} is not a Bitfinex symbol",
                "use tBASEQUOTE (tBTCUSD), tBASE:QUOTE for longer codes (tTESTBTC:TESTUSD) "
                "or fCCY for funding (fUSD), upper case",
            )  # fmt: skip
    subs: dict[str, Subscription] = {}
    for symbol in symbols:
        for channel in channels:
            sub = _parse(path, f"{where}.channels", lambda c=channel, s=symbol: parse_channel(c, s))
            _add(path, where, subs, sub, f"{channel} for {symbol}")
    for key in status:
        sub = _parse(path, f"{where}.status", lambda k=key: parse_status(k))
        _add(path, where, subs, sub, key)
    return Group(name, tuple(subs.values()), trades_tu)


def _parse(path: str, key: str, make: Any) -> Subscription:
    try:
        sub: Subscription = make()
    except SubscriptionSyntaxError as exc:
        raise ConfigError(path, key, str(exc), "correct the entry (README, config)") from None
    return sub


def _add(
    path: str, where: str, subs: dict[str, Subscription], sub: Subscription, what: str
) -> None:
    if sub.name in subs:
        raise ConfigError(
            path, where, f"{what} would write stream {sub.name!r} that another entry writes",
            "keep one variant per stream (e.g. one book precision per symbol and P-level)",
        )  # fmt: skip
    subs[sub.name] = sub


def _strings(path: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(path, key, "must be a list of strings", f'{key.split(".")[-1]} = ["…"]')
    if len(set(value)) != len(value):
        raise ConfigError(path, key, "lists an entry twice", "remove the duplicate")
    return value


def settings_reference() -> str:
    """The README configuration reference, generated from :data:`SETTINGS`."""
    lines = ["| key | default | env | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = str(s.default).lower() if s.type is bool else repr(s.default).replace("'", '"')
        lines.append(f"| `{s.section}.{s.key}` | `{default}` | `{s.env_name}` | {s.doc} |")
    for key, doc in GROUP_KEYS.items():
        lines.append(f"| `groups[].{key}` | | | {doc} |")
    for key, doc in ACCOUNT_KEYS.items():
        lines.append(f"| `accounts[].{key}` | | | {doc} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_reference())
