# AITBC API-key layer: every entry point. `just --list` documents them.

set shell := ["bash", "-euo", "pipefail", "-c"]

export PATH := justfile_directory() + "/.venv/bin:" + env_var('PATH')

# `uv run` tells its children where uv is; otherwise take it from PATH
uv := env_var_or_default("UV", "uv")

# the packages mypy checks (strict, from pyproject.toml)
typed := "shared/*/src infra/src services/*/src"

# [continue]: Ctrl-C reaches `just` too, and a runner that stopped cleanly on it is a success,
# not an error. (`just` continues on SIGINT, SIGHUP or SIGQUIT only: send SIGTERM to aitbc-up.)
# Start everything in the foreground: nats-server, keys, usage, sample Coordinator, edge + dashboard (Ctrl-C stops); `--tls`: TLS only on the bus, `--mtls`: mutual TLS
[continue]
up *FLAGS: sync
    aitbc-up {{ FLAGS }}

# [continue] as for `up`: Ctrl-C stopping it cleanly is a success.
# Start the many-machine shape in the foreground: 3 NATS nodes on loopback (every stream at 3 replicas), keys and usage twice, sample Coordinator, edges on 8000 and 8001 (Ctrl-C stops; data in .data/cluster; `--tls`, `--mtls`)
[continue]
cluster *FLAGS: sync
    aitbc-cluster {{ FLAGS }}

# Run the whole test suite (unit, integration, e2e, browser, chaos); each test starts its own nats-server
# Three workers (TEST_WORKERS), a test file each at a time: most tests wait on processes and
# sockets (a 2-core machine was half idle with two). The chaos scenarios come after, alone: their
# recovery times are what they assert, and another test's load would be in them.
test: sync
    pytest -q -n "${TEST_WORKERS:-3}" --dist loadfile -m "not chaos" --durations=15
    pytest -q -m chaos

# Run the unit tests (no processes, no network)
test-unit: sync
    pytest -q tests/unit

# Run the integration tests (a real nats-server, SQLite and PostgreSQL where reachable)
test-integration: sync
    pytest -q tests/integration

# Run the end-to-end tests (every service as a process, over HTTP)
test-e2e: sync
    pytest -q tests/e2e

# Run the browser tests: the dashboard in Debian's Chromium, headless (apt-get installs it where missing)
test-browser: sync
    pytest -q tests/browser

# Save the README's dashboard screenshots to docs/dashboard (a browser test run)
screenshots: sync
    DOCS_SCREENSHOTS_DIR=docs/dashboard pytest -q tests/browser/test_dashboard_flow.py

# Inject each fault with load running (NATS restart, kills, locked database, dead upstream...) and print the table
chaos *NAMES: sync
    python -m tests.chaos {{ NAMES }}

# Check style, formatting and types
lint: sync
    ruff check .
    ruff format --check .
    mypy {{ typed }}

# Check types (mypy, strict)
typecheck: sync
    mypy {{ typed }}

# Format the code and apply safe lint fixes
fmt: sync
    ruff format .
    ruff check --fix .

# Run the benchmarks (~20 min; `just bench --quick`: ~3 min; `--only NAMES`: some phases); writes bench/results/latest.md, fails when a target is missed
bench *ARGS: sync
    bash bench/setup.sh
    python -m bench {{ ARGS }}

# Export the AsyncAPI (NATS subjects, streams, messages) and OpenAPI (HTTP) documents to docs/
docs: sync
    python -m aitbc_contracts.asyncapi docs/asyncapi.json
    python -m aitbc_api.openapi docs/openapi.json

# Delete local data (.data: the NATS JetStream store and the SQLite databases)
clean:
    rm -rf .data

# Install the environment (.venv) exactly as uv.lock says
sync:
    {{ uv }} sync --frozen --quiet
