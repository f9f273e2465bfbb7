#!/usr/bin/env bash
# One command to run the service on this machine (Debian/Ubuntu, as root or a user with sudo):
#   scripts/start.sh                 → http://127.0.0.1:8000   (HAR_PORT=8080 scripts/start.sh to change)
# Installs what is missing (redis-server, nginx, python3-venv; a virtualenv .venv with requirements.txt),
# migrates the database, starts Redis (data in var/redis, append-only), one Celery worker per queue,
# the web app and nginx in front of it on the public port (its configuration written to var/proxy/), and
# restarts any of them that dies (see scripts/run_local.py). Ctrl-C stops everything.
# Settings: HAR_* environment variables (har/config.py).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${HAR_PROXY:-nginx}" != "none" ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  missing+=(nginx)  # the reverse proxy in front of the web app (README: The reverse proxy)
fi
if [ ! -x .venv/bin/python ] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    echo "start.sh: please install: ${missing[*]} (needs root or sudo)" >&2
    exit 1
  fi
  echo "start.sh: installing ${missing[*]} ..."
  if [[ " ${missing[*]} " == *" nginx "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
    # Debian starts its packaged nginx (a default site on port 80) when it installs it; the runner starts its own
    # nginx with its own configuration, so keep the system's from starting (policy-rc.d, for this install only)
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    no_start=1
  fi
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ -n "${no_start:-}" ]; then
    $SUDO rm -f /usr/sbin/policy-rc.d
    trap - EXIT
    # nor at the next boot
    if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --quiet nginx >/dev/null 2>&1 || true; fi
  fi
fi

# Optional: ffmpeg encodes the annotated video as H.264 .mp4, ~4x faster than the OpenCV .webm fallback.
if ! command -v ffmpeg >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    echo "start.sh: installing ffmpeg (optional, for the annotated video) ..."
    { $SUDO apt-get update -q && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends ffmpeg; } >/dev/null 2>&1 \
      || echo "start.sh: could not install ffmpeg; annotated videos will be written as .webm" >&2
  else
    echo "start.sh: ffmpeg not found; annotated videos will be written as .webm (slower)" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "start.sh: creating .venv ..."
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "start.sh: installing Python packages (requirements.txt) ..."
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi

exec .venv/bin/python scripts/run_local.py "$@"
