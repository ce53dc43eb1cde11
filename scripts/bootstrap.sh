#!/usr/bin/env bash
# Create .venv with Python 3.10 and install the locked dependencies plus this package.
# Python 3.10 is looked for on PATH, then under pyenv; failing both, uv installs one.
# Re-running is cheap: the install is skipped while requirements.lock and setup.py are
# unchanged since the last successful bootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP="$VENV/.bootstrap-stamp"
BOOTSTRAP_VERSION=2   # 2: site-packages compiled to bytecode
want=$( (cat requirements.lock setup.py; echo "$BOOTSTRAP_VERSION") | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

find_python() {
  local c
  for c in python3.10 "$(command -v pyenv >/dev/null 2>&1 && echo "$(pyenv root)/versions/3.10.13/bin/python3.10")"; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for c in "$(pyenv root)"/versions/3.10.*/bin/python3.10; do
      [ -x "$c" ] && { echo "$c"; return 0; }
    done
  fi
  return 1
}

if ! PY=$(find_python); then
  echo "bootstrap: no Python 3.10 on PATH or under pyenv; installing one with uv" >&2
  python3 -m pip install --quiet --user uv
  python3 -m uv python install 3.10
  PY=$(python3 -m uv python find 3.10)
fi
echo "bootstrap: using $PY" >&2
# A venv whose creation was interrupted (no pip yet) is made again, not reused.
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  echo "bootstrap: $VENV is incomplete (no pip); creating it again" >&2
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv==0.13.9 \
  || "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv
"$VENV/bin/python" -m uv pip install --quiet --python "$VENV/bin/python" -r requirements.lock
"$VENV/bin/python" -m uv pip install --quiet --python "$VENV/bin/python" --no-deps -e .
# Compile every installed module to bytecode now. Where PYTHONDONTWRITEBYTECODE is set (it
# is on these machines) Python never writes .pyc files on import, so without this every
# process compiled TensorFlow, TFX and Beam from source again: ~20 s more per `movierec run`
# and per Beam component process. compileall writes them regardless of that setting.
echo "bootstrap: compiling site-packages to bytecode (about a minute, once)" >&2
"$VENV/bin/python" -m compileall -q -j 0 "$VENV"/lib/python3.10/site-packages >/dev/null
echo "$want" > "$STAMP"
echo "bootstrap: $VENV ready" >&2
