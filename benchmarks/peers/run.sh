#!/usr/bin/env bash
# One command: build the peers venv if needed (setup.sh, idempotent), then run run.py in it.
#   benchmarks/peers/run.sh --data-dir ../shared/data/ml-100k [--out PATH] [--json PATH]
# Arguments go to run.py (see `run.sh --help`). The project's rows need the main venv
# (`make venv`); run.py calls its benchmarks/quality.py in a subprocess.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
"$HERE/setup.sh"
exec "${PEERS_VENV:-$HERE/.venv}/bin/python" "$HERE/run.py" "$@"
