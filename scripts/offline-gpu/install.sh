#!/bin/bash
# On the GPU host (no network): install the wheelhouse that build.py made, then this checkout.
#
#   bash scripts/offline-gpu/install.sh PART_DIR [PART_DIR ...]     e.g. .dev-whl/part1
#   bash scripts/offline-gpu/install.sh --checkout-only               wheelhouse already there
#
# Parts may arrive one call at a time: each is checked (sha256) and staged in $OFFLINE_GPU_STAGE
# (default /tmp/offline-gpu); once every part is there the archive is unpacked into
# $OFFLINE_GPU_SITE (default /tmp/site). Then this checkout is installed there (--no-deps, so
# SGLang finds its plugin entry point) with sitecustomize.py, and the imports are checked.
# Idempotent: a second run with the same parts only re-installs the checkout.
# Exit 0 also while parts are missing (it says which); use with PYTHONPATH=$OFFLINE_GPU_SITE.
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
ROOT=$(cd "$HERE/../.." && pwd)
SITE=${OFFLINE_GPU_SITE:-/tmp/site}
STAGE=${OFFLINE_GPU_STAGE:-/tmp/offline-gpu}
PY=${PYTHON:-python3}
[ $# -ge 1 ] || { echo "usage: bash $0 PART_DIR [PART_DIR ...] | --checkout-only" >&2; exit 2; }

if [ "$1" = --checkout-only ]; then
  [ -f "$SITE/.offline-gpu-installed" ] || { echo "no wheelhouse in $SITE: install its parts first" >&2; exit 1; }
else
  rc=0
  "$PY" "$HERE/parts.py" add "$STAGE" "$SITE" "$@" || rc=$?
  [ "$rc" = 3 ] && exit 0  # staged, waiting for the other parts
  [ "$rc" = 0 ] || exit "$rc"
fi

cp "$HERE/sitecustomize.py" "$SITE/"
log=$(mktemp)
if ! "$PY" -m pip install -q --no-deps --no-build-isolation --no-index --upgrade --target "$SITE" "$ROOT" >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} "$PY" - <<'PY'
import importlib, os
mods = os.environ.get("OFFLINE_GPU_CHECK", "sglang sgl_kernel sglang_eagle3_ext").split()
for m in mods:
    mod = importlib.import_module(m)
    print(f"  {m} {getattr(mod, '__version__', '')} from {os.path.dirname(mod.__file__)}")
PY
echo "installed into $SITE: export PYTHONPATH=$SITE"
