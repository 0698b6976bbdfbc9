"""Tests of bridge.config: TOML + BFX_BRIDGE_* environment, validated before connecting.

Every config is a real file under ``tmp_path``; the environment is always passed explicitly
(``env={...}``) so the developer's own variables never leak in. Every refusal must name the
file, the key and a fix (SPEC §2).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.account_config import ACCOUNT_KEYS
from bridge.config import GROUP_KEYS, SETTINGS, Config, load, settings_reference
from bridge.errors import ConfigError
from bridge.subscription import Subscription

SPEC_EXAMPLE = """
[bitfinex]
url = "wss://api-pub.bitfinex.com/ws/2"

[redis]
url = "redis://127.0.0.1:6379/0"
prefix = "bfx"
maxlen = 100000

[[groups]]
name = "majors"
symbols = ["tBTCUSD", "tETHUSD", "fUSD"]
channels = ["ticker", "trades", "book", "candles"]
status = ["deriv:tBTCF0:USTF0", "liq:global"]
"""

ONE_GROUP = """
[[groups]]
name = "g"
symbols = ["tBTCUSD"]
channels = ["ticker"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    """Write ``text`` to a config file and load it with ``env`` as the environment."""
    return load(str(write(tmp_path, text)), env=env or {})


def refusal(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    """Load ``text`` expecting a ConfigError; check it names the file and has a fix."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(str(path), env=env or {})
    err = info.value
    assert err.path == str(path)
    assert err.fix
    assert str(err).startswith(f"{path}: {err.key}: ")
    assert f"Fix: {err.fix}" in str(err)
    return err


# -- what loads ------------------------------------------------------------------------------


def test_spec_example_loads(tmp_path: Path) -> None:
    """The SPEC §2 example loads: settings as written, defaults elsewhere, every stream."""
    config = load_text(tmp_path, SPEC_EXAMPLE)
    assert config.path == str(tmp_path / "bridge.toml")
    expected = {
        "bitfinex.url": "wss://api-pub.bitfinex.com/ws/2",
        "bitfinex.channel_limit": 25,
        "bitfinex.connections_per_minute": 20,
        "bitfinex.channel_timeout": 30.0,
        "bitfinex.connection_timeout": 20.0,
        "bitfinex.ping_interval": 10.0,
        "bitfinex.verify_checksums": True,
        "redis.url": "redis://127.0.0.1:6379/0",
        "redis.prefix": "bfx",
        "redis.maxlen": 100000,
        "redis.batch": 500,
        "redis.buffer": 100000,
    }
    assert {key: config[key] for key in expected} == expected
    [group] = config.groups
    assert group.name == "majors"
    assert group.trades_tu is False
    assert [sub.name for sub in group.subscriptions] == [
        "ticker:tBTCUSD",
        "trades:tBTCUSD",
        "book:tBTCUSD:P0",
        "candles:tBTCUSD:1m",
        "ticker:tETHUSD",
        "trades:tETHUSD",
        "book:tETHUSD:P0",
        "candles:tETHUSD:1m",
        "ticker:fUSD",
        "trades:fUSD",
        "book:fUSD:P0",
        "candles:fUSD:1m:a30:p2:p30",
        "status:deriv:tBTCF0:USTF0",
        "status:liq:global",
    ]
    assert config.group("majors") is group
    assert config["redis.prefix"] == "bfx"


def test_defaults_when_only_groups_are_given(tmp_path: Path) -> None:
    """Without [bitfinex] and [redis] every setting takes its documented default."""
    config = load_text(tmp_path, ONE_GROUP)
    assert config["bitfinex.url"] == "wss://api-pub.bitfinex.com/ws/2"
    assert config["redis.url"] == "redis://127.0.0.1:6379/0"
    assert config["redis.maxlen"] == 100_000
    assert {f"{s.section}.{s.key}": s.default for s in SETTINGS} == dict(config.settings)


def test_default_channels_when_omitted(tmp_path: Path) -> None:
    """A group without `channels` gets ticker, trades, book and candles with defaults."""
    config = load_text(tmp_path, '[[groups]]\nname = "g"\nsymbols = ["tBTCUSD"]\n')
    assert [s.name for s in config.groups[0].subscriptions] == [
        "ticker:tBTCUSD",
        "trades:tBTCUSD",
        "book:tBTCUSD:P0",
        "candles:tBTCUSD:1m",
    ]


def test_trades_tu_group_option(tmp_path: Path) -> None:
    """trades_tu = true is carried on the group."""
    config = load_text(tmp_path, ONE_GROUP + "trades_tu = true\n")
    assert config.groups[0].trades_tu is True


def test_several_groups(tmp_path: Path) -> None:
    """Groups keep their order and their own subscriptions."""
    text = ONE_GROUP + '\n[[groups]]\nname = "alts"\nsymbols = ["tETHUSD"]\nchannels = ["trades"]\n'
    config = load_text(tmp_path, text)
    assert [g.name for g in config.groups] == ["g", "alts"]
    assert config.group("alts").subscriptions == (Subscription("trades", "tETHUSD"),)


def test_unknown_group_name_lookup_is_a_config_error(tmp_path: Path) -> None:
    """Config.group() of an unknown name raises ConfigError naming the known groups."""
    config = load_text(tmp_path, ONE_GROUP)
    with pytest.raises(ConfigError) as info:
        config.group("nope")
    assert info.value.key == "groups"
    assert "g" in info.value.fix


# -- environment overrides -------------------------------------------------------------------


def test_env_overrides_urls(tmp_path: Path) -> None:
    """BFX_BRIDGE_WS_URL and BFX_BRIDGE_REDIS_URL win over the file."""
    env = {
        "BFX_BRIDGE_WS_URL": "ws://127.0.0.1:9999/ws/2",
        "BFX_BRIDGE_REDIS_URL": "rediss://:secret@redis.example:6380/2",
    }
    config = load_text(tmp_path, SPEC_EXAMPLE, env)
    assert config["bitfinex.url"] == "ws://127.0.0.1:9999/ws/2"
    assert config["redis.url"] == "rediss://:secret@redis.example:6380/2"


def test_generic_env_overrides_are_coerced(tmp_path: Path) -> None:
    """BFX_BRIDGE_<SECTION>_<KEY> overrides any setting, converted to its type."""
    env = {
        "BFX_BRIDGE_REDIS_MAXLEN": "5000",
        "BFX_BRIDGE_REDIS_PREFIX": "md",
        "BFX_BRIDGE_BITFINEX_CHANNEL_TIMEOUT": "12.5",
        "BFX_BRIDGE_BITFINEX_VERIFY_CHECKSUMS": "false",
        "BFX_BRIDGE_BITFINEX_CHANNEL_LIMIT": "30",
    }
    config = load_text(tmp_path, SPEC_EXAMPLE, env)
    assert config["redis.maxlen"] == 5000
    assert config["redis.prefix"] == "md"
    assert config["bitfinex.channel_timeout"] == 12.5
    assert config["bitfinex.verify_checksums"] is False
    assert config["bitfinex.channel_limit"] == 30


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("no", False),
        ("Off", False),
    ],
)
def test_env_booleans(tmp_path: Path, text: str, value: bool) -> None:
    """Boolean env overrides accept 1/true/yes/on and 0/false/no/off, any case."""
    config = load_text(tmp_path, ONE_GROUP, {"BFX_BRIDGE_BITFINEX_VERIFY_CHECKSUMS": text})
    assert config["bitfinex.verify_checksums"] is value


def test_bad_env_value_is_refused(tmp_path: Path) -> None:
    """A non-numeric BFX_BRIDGE_REDIS_MAXLEN is refused naming redis.maxlen."""
    err = refusal(tmp_path, SPEC_EXAMPLE, {"BFX_BRIDGE_REDIS_MAXLEN": "lots"})
    assert err.key == "redis.maxlen"
    assert "'lots'" in err.problem


def test_env_names_follow_the_rule() -> None:
    """Every setting's env variable is BFX_BRIDGE_<SECTION>_<KEY> except the two URLs."""
    names = {f"{s.section}.{s.key}": s.env_name for s in SETTINGS}
    assert names["bitfinex.url"] == "BFX_BRIDGE_WS_URL"
    assert names["redis.url"] == "BFX_BRIDGE_REDIS_URL"
    assert names["redis.maxlen"] == "BFX_BRIDGE_REDIS_MAXLEN"
    assert names["bitfinex.connections_per_minute"] == "BFX_BRIDGE_BITFINEX_CONNECTIONS_PER_MINUTE"


# -- channel syntax --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "symbol", "expected"),
    [
        ("book", "tBTCUSD", Subscription("book", "tBTCUSD", "P0", "F0", 25)),
        ("book:R0", "tBTCUSD", Subscription("book", "tBTCUSD", "R0", "F0", 25)),
        ("book:P2:F1:100", "tBTCUSD", Subscription("book", "tBTCUSD", "P2", "F1", 100)),
        ("book:P1:F0:250", "fUSD", Subscription("book", "fUSD", "P1", "F0", 250)),
        ("candles", "tBTCUSD", Subscription("candles", "tBTCUSD", key="trade:1m:tBTCUSD")),
        ("candles:5m", "tBTCUSD", Subscription("candles", "tBTCUSD", key="trade:5m:tBTCUSD")),
        (
            "candles:1m:a30:p2:p30",
            "fUSD",
            Subscription("candles", "fUSD", key="trade:1m:fUSD:a30:p2:p30"),
        ),
        ("candles", "fUSD", Subscription("candles", "fUSD", key="trade:1m:fUSD:a30:p2:p30")),
        ("ticker", "tTESTBTC:TESTUSD", Subscription("ticker", "tTESTBTC:TESTUSD")),
        ("trades", "fUSD", Subscription("trades", "fUSD")),
    ],
)
def test_channel_syntax(tmp_path: Path, channel: str, symbol: str, expected: Subscription) -> None:
    """Channel options written in the name give the subscription of SPEC §2."""
    text = f'[[groups]]\nname = "g"\nsymbols = ["{symbol}"]\nchannels = ["{channel}"]\n'
    assert load_text(tmp_path, text).groups[0].subscriptions == (expected,)


@pytest.mark.parametrize(
    ("channel", "symbol", "stream"),
    [
        ("ticker", "tBTCUSD", "ticker:tBTCUSD"),
        ("trades", "fUSD", "trades:fUSD"),
        ("book", "tBTCUSD", "book:tBTCUSD:P0"),
        ("book:R0", "tBTCUSD", "book:tBTCUSD:R0"),
        ("book:P2:F1:100", "tETHUSD", "book:tETHUSD:P2"),
        ("candles", "tBTCUSD", "candles:tBTCUSD:1m"),
        ("candles:5m", "tTESTBTC:TESTUSD", "candles:tTESTBTC:TESTUSD:5m"),
        ("candles:1m:a30:p2:p30", "fUSD", "candles:fUSD:1m:a30:p2:p30"),
        ("candles:15m:p30", "fUSD", "candles:fUSD:15m:p30"),
    ],
)
def test_stream_names(tmp_path: Path, channel: str, symbol: str, stream: str) -> None:
    """Each subscription writes the SPEC §3 stream key (without the prefix)."""
    text = f'[[groups]]\nname = "g"\nsymbols = ["{symbol}"]\nchannels = ["{channel}"]\n'
    [sub] = load_text(tmp_path, text).groups[0].subscriptions
    assert sub.name == stream


def test_status_stream_names(tmp_path: Path) -> None:
    """Status keys write status:{key} streams."""
    text = '[[groups]]\nname = "s"\nstatus = ["deriv:tBTCF0:USTF0", "liq:global"]\n'
    subs = load_text(tmp_path, text).groups[0].subscriptions
    assert [s.name for s in subs] == ["status:deriv:tBTCF0:USTF0", "status:liq:global"]


# -- refusals --------------------------------------------------------------------------------


def test_unknown_section_suggests_the_right_one(tmp_path: Path) -> None:
    """A misspelt section is refused with "did you mean"."""
    err = refusal(tmp_path, '[redsi]\nurl = "redis://x"\n' + ONE_GROUP)
    assert err.key == "redsi"
    assert err.problem == "unknown key"
    assert err.fix == "did you mean redis?"


def test_unknown_key_in_a_section_suggests_the_right_one(tmp_path: Path) -> None:
    """A misspelt setting is refused naming section.key with "did you mean"."""
    err = refusal(tmp_path, "[redis]\nmaxlne = 5\n" + ONE_GROUP)
    assert err.key == "redis.maxlne"
    assert err.fix == "did you mean redis.maxlen?"


def test_unknown_group_key_suggests_the_right_one(tmp_path: Path) -> None:
    """A misspelt group key is refused naming groups[i].key with "did you mean"."""
    err = refusal(tmp_path, '[[groups]]\nname = "g"\nsymbol = ["tBTCUSD"]\n')
    assert err.key == "groups[0].symbol"
    assert err.fix == "did you mean groups[0].symbols?"


def test_unknown_key_without_close_match_lists_known_keys(tmp_path: Path) -> None:
    """With no close match the fix lists the known keys."""
    err = refusal(tmp_path, "[bitfinex]\nzzz = 1\n" + ONE_GROUP)
    assert err.key == "bitfinex.zzz"
    assert "channel_limit" in err.fix and "url" in err.fix


@pytest.mark.parametrize("symbol", ["btcusd", "BTCUSD", "tbtcusd", "tBTC", "xBTCUSD", "tBTC-USD"])
def test_bad_symbol_syntax_is_refused_naming_symbols(tmp_path: Path, symbol: str) -> None:
    """A symbol that is not tXXXYYY / tXXX:YYY / fXXX is refused under groups[i].symbols."""
    err = refusal(tmp_path, f'[[groups]]\nname = "g"\nsymbols = ["{symbol}"]\n')
    assert err.key == "groups[0].symbols"
    assert repr(symbol) in err.problem
    assert "tBTCUSD" in str(err)


@pytest.mark.parametrize(
    "channel",
    [
        "orders",
        "book:P5",
        "book:P0:F2",
        "book:P0:F0:50",
        "book:R0:F0:250",
        "candles:2m",
        "candles:1m:a30:p2:p30",
        "ticker:P0",
        "book:P0:F0:25:x",
    ],
)
def test_bad_channel_is_refused(tmp_path: Path, channel: str) -> None:
    """Unknown channels and bad options are refused under groups[i].channels."""
    err = refusal(
        tmp_path, f'[[groups]]\nname = "g"\nsymbols = ["tBTCUSD"]\nchannels = ["{channel}"]\n'
    )
    assert err.key == "groups[0].channels"
    assert repr(channel) in err.problem


def test_bad_status_key_is_refused(tmp_path: Path) -> None:
    """A status key that is neither deriv:SYMBOL nor liq:global is refused."""
    err = refusal(tmp_path, '[[groups]]\nname = "g"\nstatus = ["deriv:btc"]\n')
    assert err.key == "groups[0].status"
    assert "liq:global" in err.problem


def test_duplicate_group_name_is_refused(tmp_path: Path) -> None:
    """Two groups with one name are refused at the second one's name."""
    text = ONE_GROUP + '\n[[groups]]\nname = "g"\nsymbols = ["tETHUSD"]\n'
    err = refusal(tmp_path, text)
    assert err.key == "groups[1].name"
    assert "'g'" in err.problem


def test_symbol_in_two_groups_is_refused(tmp_path: Path) -> None:
    """A symbol listed in two groups is refused, naming both groups."""
    text = ONE_GROUP + '\n[[groups]]\nname = "h"\nsymbols = ["tBTCUSD"]\nchannels = ["trades"]\n'
    err = refusal(tmp_path, text)
    assert err.key.startswith("groups[1]")
    assert "tBTCUSD" in err.problem and "'g'" in err.problem and "'h'" in err.problem
    assert "one group" in err.fix


def test_status_key_in_two_groups_is_refused(tmp_path: Path) -> None:
    """A status key listed in two groups is refused."""
    text = (
        '[[groups]]\nname = "a"\nstatus = ["liq:global"]\n'
        '[[groups]]\nname = "b"\nstatus = ["liq:global"]\n'
    )
    err = refusal(tmp_path, text)
    assert err.key.startswith("groups[1]")
    assert "liq:global" in err.problem


@pytest.mark.parametrize(
    ("channels", "stream"),
    [
        ('["book", "book:P0:F1:100"]', "book:tBTCUSD:P0"),
        ('["candles", "candles:1m"]', "candles:tBTCUSD:1m"),
        ('["book:R0", "book:R0:F0:100"]', "book:tBTCUSD:R0"),
    ],
)
def test_two_subscriptions_writing_one_stream_are_refused(
    tmp_path: Path, channels: str, stream: str
) -> None:
    """Two variants that would write the same stream are refused, naming the stream."""
    err = refusal(
        tmp_path, f'[[groups]]\nname = "g"\nsymbols = ["tBTCUSD"]\nchannels = {channels}\n'
    )
    assert err.key == "groups[0]"
    assert repr(stream) in err.problem


def test_channel_listed_twice_is_refused(tmp_path: Path) -> None:
    """The same channel twice in one list is refused."""
    err = refusal(
        tmp_path, '[[groups]]\nname = "g"\nsymbols = ["tBTCUSD"]\nchannels = ["ticker", "ticker"]\n'
    )
    assert err.key == "groups[0].channels"
    assert "twice" in err.problem


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[redis]\nmaxlen = "lots"\n', "redis.maxlen"),
        ("[redis]\nmaxlen = true\n", "redis.maxlen"),
        ("[redis]\nmaxlen = 0\n", "redis.maxlen"),
        ("[bitfinex]\nchannel_limit = 2.5\n", "bitfinex.channel_limit"),
        ('[bitfinex]\nping_interval = "fast"\n', "bitfinex.ping_interval"),
        ('[bitfinex]\nverify_checksums = "maybe"\n', "bitfinex.verify_checksums"),
        ('[redis]\nprefix = ["a", "b"]\n', "redis.prefix"),
        ('[redis]\nprefix = ""\n', "redis.prefix"),
        ("bitfinex = 5\n", "bitfinex"),
    ],
)
def test_bad_setting_types_are_refused(tmp_path: Path, text: str, key: str) -> None:
    """A setting of the wrong type or below its minimum is refused naming section.key."""
    err = refusal(tmp_path, text + ONE_GROUP)
    assert err.key == key


@pytest.mark.parametrize(
    ("group", "key"),
    [
        ('name = "g"\nsymbols = "tBTCUSD"\n', "groups[0].symbols"),
        ('name = "g"\nsymbols = ["tBTCUSD", 5]\n', "groups[0].symbols"),
        ('name = "g"\nsymbols = ["tBTCUSD"]\nchannels = "ticker"\n', "groups[0].channels"),
        ('name = "g"\nsymbols = ["tBTCUSD"]\ntrades_tu = "yes"\n', "groups[0].trades_tu"),
        ('name = "my group"\nsymbols = ["tBTCUSD"]\n', "groups[0].name"),
        ('symbols = ["tBTCUSD"]\n', "groups[0].name"),
        ('name = "g"\n', "groups[0]"),
    ],
)
def test_bad_group_entries_are_refused(tmp_path: Path, group: str, key: str) -> None:
    """Group keys of the wrong type, a bad name or an empty group are refused."""
    err = refusal(tmp_path, "[[groups]]\n" + group)
    assert err.key == key


@pytest.mark.parametrize("text", ['[redis]\nprefix = "bfx"\n', "groups = []\n", 'groups = "x"\n'])
def test_missing_groups_is_refused(tmp_path: Path, text: str) -> None:
    """A config without [[groups]] is refused with the fix "add at least one [[groups]]"."""
    err = refusal(tmp_path, text)
    assert err.key == "groups"
    assert "[[groups]]" in err.fix


def test_group_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    """groups = [5] is refused at groups[0]."""
    err = refusal(tmp_path, "groups = [5]\n")
    assert err.key == "groups[0]"
    assert "[[groups]]" in err.fix


def test_invalid_toml_and_missing_file_are_refused(tmp_path: Path) -> None:
    """Broken TOML and a missing file are ConfigErrors naming the file."""
    err = refusal(tmp_path, "[redis\nurl = 1\n")
    assert "TOML" in err.problem
    missing = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError) as info:
        load(missing, env={})
    assert info.value.path == missing and "-c" in info.value.fix


# -- reference -------------------------------------------------------------------------------


def test_settings_reference_lists_every_setting() -> None:
    """settings_reference() has one row per setting with its default and env name."""
    reference = settings_reference()
    rows = reference.splitlines()
    assert rows[0] == "| key | default | env | meaning |"
    for s in SETTINGS:
        [row] = [r for r in rows if r.startswith(f"| `{s.section}.{s.key}` |")]
        assert f"`{s.env_name}`" in row
        assert s.doc in row
    assert "| `bitfinex.verify_checksums` | `true` |" in reference
    assert "| `redis.maxlen` | `100000` |" in reference
    for key in ("name", "symbols", "channels", "status", "trades_tu"):
        assert f"| `groups[].{key}` |" in reference
    assert len(rows) == 2 + len(SETTINGS) + len(GROUP_KEYS) + len(ACCOUNT_KEYS)


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        ("bitfinex", "url", "https://api-pub.bitfinex.com/ws/2"),
        ("bitfinex", "auth_url", "api.bitfinex.com/ws/2"),
        ("redis", "url", "http://127.0.0.1:6379"),
        ("redis", "url", "127.0.0.1:6379"),
    ],
)
def test_urls_of_the_wrong_kind_are_refused(
    tmp_path: Path, table: str, key: str, value: str
) -> None:
    """A WebSocket URL must be ws:// or wss://; a Redis URL redis://, rediss://, unix:// or
    "embedded": anything else is refused before connecting, naming the key."""
    path = tmp_path / "bridge.toml"
    path.write_text(
        f'[{table}]\n{key} = "{value}"\n[[groups]]\nname = "g"\nsymbols = ["tBTCUSD"]\n'
    )
    with pytest.raises(ConfigError) as info:
        load(str(path), env={})
    assert info.value.key == f"{table}.{key}" and "not a URL of the right kind" in str(info.value)


def test_a_bad_redis_url_is_shown_redacted(tmp_path: Path) -> None:
    """The refusal of a Redis URL does not repeat its password."""
    path = tmp_path / "bridge.toml"
    path.write_text('[redis]\nurl = "http://u:s3cret@h"\n[[groups]]\nname = "g"\n'
                    'symbols = ["tBTCUSD"]\n')  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load(str(path), env={})
    assert "s3cret" not in str(info.value)
