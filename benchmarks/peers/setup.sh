#!/usr/bin/env bash
# Create benchmarks/peers/.venv (Python 3.10) with the peer libraries of requirements.txt
# and the movierec package without its dependencies (run.py uses only its TensorFlow-free
# modules: the MovieLens readers and the ranking metrics).
#
# Idempotent: skipped while requirements.txt, this script and setup.py are unchanged since
# the last successful run. About 4-5 minutes the first time on 2 cores (scikit-surprise and
# lightfm compile from source).
#
# Why the steps are as they are:
#  * pip is pinned below 25.3: lightfm 1.17's setup.py sets `__builtins__.__LIGHTFM_SETUP__`,
#    which fails under a PEP 517 backend (there `__builtins__` is a dict), so lightfm is built
#    the legacy way (`--no-use-pep517`), an option later pips dropped.
#  * numpy, Cython and setuptools are installed first and the sdists are built against them
#    without build isolation, so the compiled extensions match the numpy that runs them
#    (numpy<2, which scikit-surprise 1.1.4 needs).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${PEERS_VENV:-$HERE/.venv}"   # PEERS_VENV: build elsewhere (e.g. to try a clean install)
STAMP="$VENV/.peers-stamp"
want=$(cat "$HERE/requirements.txt" "$HERE/setup.sh" "$REPO/setup.py" | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "peers: $VENV is up to date" >&2
  exit 0
fi

# The Python 3.10 that `make venv` (scripts/bootstrap.sh) found for the project's own venv,
# which run.sh needs anyway for the project's rows.
[ -x "$REPO/.venv/bin/python" ] || (cd "$REPO" && scripts/bootstrap.sh)
PY="$(sed -n 's/^home *= *//p' "$REPO/.venv/pyvenv.cfg")/python3.10"
echo "peers: using $PY" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
pin() { grep -E "^$1==" "$HERE/requirements.txt" | sed 's/[[:space:]]*#.*//'; }

pip install --quiet "pip==24.3.1"
pip install --quiet "$(pin setuptools)" "$(pin wheel)" "$(pin Cython)" "$(pin numpy)"
echo "peers: building lightfm (legacy setup.py build)" >&2
pip install --quiet --no-build-isolation --no-use-pep517 "$(pin lightfm)"
echo "peers: installing the other peers (scikit-surprise compiles for ~3 minutes)" >&2
pip install --quiet --no-build-isolation -r "$HERE/requirements.txt"
pip install --quiet --no-deps --use-pep517 -e "$REPO"
"$VENV/bin/python" -c "import implicit, cornac, lightfm, surprise, movierec.components.ranking_metrics"
echo "$want" > "$STAMP"
echo "peers: $VENV ready" >&2
