#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian machine and runs it.
#   bash scripts/test.sh [pytest args...]
# Installs (when missing): redis-server, postgresql, ffmpeg, nginx, chromium (Debian packages; needs root or sudo),
# a virtual environment at .venv with the runtime, test and training requirements.
# Runs the linter (ruff), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)  # the runner's reverse proxy (tests/test_runner.py)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need_apt+=(chromium)  # tests/browser
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${need_apt[*]}"
  if [[ " ${need_apt[*]} " == *" nginx "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
    # the tests start nginx with their own configuration: keep Debian from starting its default site on port 80
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    no_start=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  if [ -n "${no_start:-}" ]; then
    $SUDO rm -f /usr/sbin/policy-rc.d
    trap - EXIT
    if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --quiet nginx >/dev/null 2>&1 || true; fi
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -r requirements-test.txt -r requirements-train.txt

.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest "$@"
