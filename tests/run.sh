#!/usr/bin/env bash
# Install everything the tests need, make sure a redis-server answers on 127.0.0.1:6379,
# then run the linters, the type checker and the whole suite. README: "Run the tests".
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

if ! command -v redis-server >/dev/null 2>&1; then
    echo "tests/run.sh: installing redis-server (apt-get)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
fi

"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]"

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "tests/run.sh: starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --logfile /tmp/bfx-bridge-ci-redis.log
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
"$PYTHON" -m mypy bridge
"$PYTHON" -m pytest -n 4 --dist loadfile -q -p no:cacheprovider "$@"
