#!/usr/bin/env bash
# One-command environment for convnext_dense: creates a venv at the repository root and installs
# one of the two supported OpenMMLab stacks, mmcv with its compiled ops included (CPU kernels, and
# CUDA kernels on a GPU machine with a matching nvcc).
#
#   bash tools/setup_env.sh               (`make setup`: the upstream stack in .venv/)
#   STACK=onedl bash tools/setup_env.sh   (`make setup STACK=onedl`: the OneDL forks, .venv-onedl/)
#
# Idempotent: a second run with nothing changed only checks a stamp and the imports (seconds).
#
# Environment:
#   STACK                   upstream (default): mmengine 0.10.7, mmcv 2.1.0, mmdet 3.3.0,
#                           mmsegmentation 1.2.2, mmpretrain 1.2.0 (OpenMMLab, unmaintained);
#                           onedl: onedl-mmengine 0.10.12, onedl-mmcv 2.3.6, onedl-mmdetection
#                           3.5.1, onedl-mmsegmentation 1.4.2, onedl-mmpretrain 1.3.6 (maintained
#                           forks, same import names). The pins are the extras of setup.cfg.
#   PYTHON                  interpreter for the venv (default: python3.11, else python3)
#   VENV                    venv folder (default: <repo>/.venv, or <repo>/.venv-onedl for onedl)
#   CONVNEXT_DENSE_CACHE    wheel cache (default: ~/.cache/convnext_dense)
#   MAX_JOBS                parallel compile jobs for mmcv (default: number of cores)
#   MMCV_CUDA_OPS           auto (default): mmcv's CUDA kernels when torch sees a GPU and the nvcc
#                           found has torch's CUDA major, else CPU ops only (RoIAlign/nms then run
#                           on the GPU through torchvision, roi_ops='auto'); 1: CUDA kernels or an
#                           error before compiling; 0: CPU ops only. FORCE_CUDA=1 means 1.
#   TORCH_CUDA_ARCH_LIST    compute capabilities to compile CUDA kernels for ('9.0', '8.0;9.0');
#                           default: those of the visible GPUs; required with no GPU visible
#   CUDA_HOME               toolkit to build with (default: the one the first nvcc on PATH runs
#                           from, wrapper scripts followed)
#
# Why each step is the way it is:
# - One venv per stack: both stacks install the import names mmengine/mmcv/mmdet/mmseg, so in
#   one environment one would overwrite the other's files. setup.cfg declares each stack as an
#   extra under its own distribution names ([upstream] / [onedl], plus [tests-upstream] /
#   [tests-onedl] for mmpretrain), so pip never pulls upstream mmdet/mmcv over a fork.
# - torch: a torch that the chosen interpreter already has is kept (the venv then sees the
#   system site-packages); otherwise torch 2.14.1 + torchvision 0.29.1 are installed. torchvision
#   is needed by timm and mmpretrain, the outside references the tests compare against.
# - mmcv 2.1.0 has no wheel for current torch and onedl-mmcv publishes only an sdist, so either
#   is built from its sdist with its ops against the installed torch (--no-build-isolation).
#   Both setup.py ask for -std=c++17, but torch >= 2.10 headers stop with "C++20 or later
#   compatible compiler is required": the copy of setup.py we build from is raised to C++20
#   (mmcv #3341). The wheel is cached under a key of distribution name + version + torch
#   version + Python tag + ops target, because pip's own wheel cache ignores the torch version
#   and would hand back a wheel built against another torch's ABI.
# - Each of mmcv's 77 CPU op sources (78 in onedl-mmcv) spends most of its compile time parsing
#   the same torch headers; tools/setup/pch_cxx.sh (the C++ compiler for that build) parses them
#   once into a precompiled header: the mmcv 2.1.0 build took 9 min 56 s without it and 3 min
#   19 s with it on a 2-core Xeon, same flags (-O3), same op results and speed
#   (tests/ops/test_mmcv_ops.py); onedl-mmcv 2.3.6 builds with it in 3 min 8 s. A CUDA build
#   (FORCE_CUDA=1, on a machine with a GPU) compiles its .cpp files the same way and its 58 .cu
#   files with nvcc (which preprocesses them itself, untouched by the wrapper), MAX_JOBS (default:
#   all cores) at a time: 53 min of CPU time for one GPU architecture (sm_90), measured.
# - The CUDA decisions are made before anything compiles, by tools/setup/cuda_env.py: torch takes
#   CUDA_HOME from where it finds nvcc, wrong for a wrapper script outside the toolkit; a toolkit
#   without the cuBLAS/cuSPARSE/cuSOLVER headers (torch's CUDA headers include them) gets them
#   from torch's own nvidia-* wheels through CPATH; an nvcc of another CUDA major than torch's, or
#   an empty arch list, is refused with both ways out (the matching toolkit, or CPU ops). The ops
#   target (cpu / cuda<archs>) is part of the stamp, of the wheel cache key and of the checks of
#   the installed mmcv, so a venv first set up without CUDA ops is rebuilt where they are wanted.
# - setuptools>=77,<81: mmcv's setup.py and mmengine 0.10.7's `mmdet::`/`mmseg::` config
#   inheritance import pkg_resources, which setuptools 81 removed; torch asks for >=77.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=${STACK:-upstream}
case $STACK in
  upstream)
    MMCV_DIST=mmcv MMCV_VERSION=2.1.0 default_venv=$ROOT/.venv ;;
  onedl)
    MMCV_DIST=onedl-mmcv MMCV_VERSION=2.3.6 default_venv=$ROOT/.venv-onedl ;;
  *)
    echo "setup_env.sh: STACK=$STACK is not a supported stack; use upstream or onedl" >&2
    exit 2 ;;
esac
VENV=${VENV:-$default_venv}
CACHE=${CONVNEXT_DENSE_CACHE:-$HOME/.cache/convnext_dense}
if [ -z "${PYTHON:-}" ]; then
  PYTHON=$(command -v python3.11 || command -v python3)
fi

log() { printf '[setup %s %s] %s\n' "$STACK" "$(date +%H:%M:%S)" "$*"; }
start=$(date +%s)

# Sets ops_target (cpu / cuda<archs>), ops_note and the array ops_build_env (the environment of
# the mmcv build) from the torch of the interpreter $1; returns 3 while that has no torch, and
# stops the setup when a CUDA build is wanted that cannot succeed.
ops_target= ops_note=
ops_build_env=()
decide_ops() {
  local decision rc=0
  decision=$("$1" "$ROOT/tools/setup/cuda_env.py" plan) || rc=$?
  case $rc in
    0) eval "$decision" ;;
    3) return 3 ;;
    *) exit 1 ;;
  esac
}

# The stamp covers everything that decides what gets installed, and where the editable install
# points.
stamp_inputs() {
  echo "$STACK $ROOT ops=$ops_target"
  cat "$ROOT/tools/setup_env.sh" "$ROOT/tools/setup/cuda_env.py" "$ROOT/setup.cfg" \
    "$ROOT/pyproject.toml"
  "$PYTHON" -c 'import sys; print(sys.version)'
}
stamp_file=$VENV/.convnext_dense-setup
# Which ops target the installed mmcv was built for: a CPU build answers the CUDA checks, but a
# CUDA build for other GPUs is only told apart by this record.
mmcv_ops_file=$VENV/.convnext_dense-mmcv-ops

check_imports() {
  STACK=$STACK ROOT=$ROOT OPS_TARGET=$ops_target "$VENV/bin/python" - <<'PYEOF'
import os
import sys

import torch, torchvision, mmengine, mmcv, mmdet, mmseg, pycocotools  # noqa: F401
from mmcv.ops import RoIAlign, nms  # noqa: F401  (fails when mmcv was built without its ops)
import convnext_dense  # noqa: F401
from convnext_dense.compat import installed_stack

# A distribution of the other stack installed on top would have replaced these files.
stack = installed_stack()
if stack != os.environ['STACK']:
    raise SystemExit(f'this venv holds the {stack} stack, not STACK={os.environ["STACK"]}')
sys.path.insert(0, os.path.join(os.environ['ROOT'], 'tools', 'setup'))
from cuda_env import SetupError, check_mmcv_ops  # noqa: E402
try:
    check_mmcv_ops(os.environ['OPS_TARGET'])
except SetupError as error:
    raise SystemExit(f'setup_env.sh: {error}') from None
PYEOF
}

if [ -x "$VENV/bin/python" ]; then
  decide_ops "$VENV/bin/python" || true
fi
stamp_now=$(stamp_inputs | sha256sum | cut -d' ' -f1)
if [ -n "$ops_target" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_now" ] && check_imports 2>/dev/null; then
  log "environment up to date in $VENV ($(( $(date +%s) - start )) s)"
  exit 0
fi

# 1. The venv, with a torch the interpreter already has kept.
if [ ! -x "$VENV/bin/python" ]; then
  if "$PYTHON" -c 'import torch' 2>/dev/null; then
    log "keeping the torch of $PYTHON ($("$PYTHON" -c 'import torch; print(torch.__version__)'))"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
# git and ruff skip a folder whose .gitignore ignores everything in it (what Python 3.13's venv
# writes itself); the repository's .gitignore names only .venv/.
[ -f "$VENV/.gitignore" ] || printf '*\n' > "$VENV/.gitignore"
PY=$VENV/bin/python
# The other stack's distributions in this venv would have their files overwritten (one venv each).
other_stack=$("$PY" - "$STACK" <<'PYEOF'
import importlib.metadata, sys
upstream = ['mmengine', 'mmcv', 'mmdet', 'mmsegmentation']
onedl = ['onedl-mmengine', 'onedl-mmcv', 'onedl-mmdetection', 'onedl-mmsegmentation']
other = upstream if sys.argv[1] == 'onedl' else onedl
found = []
for name in other:
    try:
        found.append(f'{name} {importlib.metadata.version(name)}')
    except importlib.metadata.PackageNotFoundError:
        pass
print(', '.join(found))
PYEOF
)
if [ -n "$other_stack" ]; then
  echo "setup_env.sh: $VENV holds the other OpenMMLab stack ($other_stack), whose files" \
    "STACK=$STACK would overwrite; use another VENV (or remove this one)" >&2
  exit 1
fi
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

pip_install "setuptools>=77,<81" wheel
if ! "$PY" -c 'import torch, torchvision' 2>/dev/null; then
  log "installing torch 2.14.1 + torchvision 0.29.1 (about a minute)"
  pip_install torch==2.14.1 torchvision==0.29.1
fi

# 2. mmcv with ops, from the cache or built once.
if [ -z "$ops_target" ]; then
  decide_ops "$PY" || { echo "setup_env.sh: torch does not import with $PY" >&2; exit 1; }
fi
if [ -n "$ops_note" ]; then
  log "$ops_note"
fi
torch_version=$("$PY" -c 'import torch; print(torch.__version__)')
py_tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
wheel_dir=$CACHE/wheels/$MMCV_DIST-$MMCV_VERSION+torch$torch_version+$py_tag+$ops_target
wheel_name=${MMCV_DIST//-/_}-$MMCV_VERSION-*.whl
# An mmcv of the pinned version already installed in this venv whose ops load against its torch,
# with CUDA kernels for these GPUs where the target asks for them, needs no wheel (a venv kept
# from an earlier setup whose wheel cache was emptied). A CUDA build also has the CPU kernels.
mmcv_installed() {
  if [[ $ops_target == cuda* ]] \
      && [ "$(cat "$mmcv_ops_file" 2>/dev/null)" != "$MMCV_DIST $MMCV_VERSION $ops_target" ]; then
    return 1
  fi
  ROOT=$ROOT "$PY" - "$MMCV_DIST" "$MMCV_VERSION" "$ops_target" <<'PYEOF' 2>/dev/null
import importlib.metadata as m, os, sys
if m.version(sys.argv[1]) != sys.argv[2]:
    sys.exit(1)
from mmcv.ops import RoIAlign, nms  # noqa: F401  (compiled against this venv's torch)
sys.path.insert(0, os.path.join(os.environ['ROOT'], 'tools', 'setup'))
from cuda_env import check_mmcv_ops
check_mmcv_ops(sys.argv[3])
PYEOF
}
if ! mmcv_installed && ! ls "$wheel_dir"/$wheel_name >/dev/null 2>&1; then
  if [ "$ops_target" = cpu ]; then
    took="about 3-4 min on 2 cores (precompiled torch headers)"
  else
    took="about 20 min on 2 idle cores for one GPU architecture (58 CUDA sources)"
  fi
  log "building $MMCV_DIST $MMCV_VERSION with ops ($ops_target) against torch $torch_version: $took, once per machine"
  # ninja lets torch's extension builder compile MAX_JOBS files at once (serial without it).
  pip_install ninja
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
    "$MMCV_DIST==$MMCV_VERSION" -d "$build/sdist"
  mkdir "$build/src"
  tar xzf "$build"/sdist/*.tar.gz -C "$build/src" --strip-components=1
  sed -i 's/-std=c++17/-std=c++20/g' "$build/src/setup.py"
  if ! grep -q -- '-std=c++20' "$build/src/setup.py"; then
    echo "setup_env.sh: $MMCV_DIST $MMCV_VERSION's setup.py has no -std=c++17 to raise to C++20" >&2
    exit 1
  fi
  # Every op source spends most of its compile time parsing the same torch headers: the
  # wrapper compiles them once into a precompiled header (tools/setup/pch_cxx.sh).
  # MMCV_WITH_OPS=1 is what mmcv 2.1.0 needs to build its ops; onedl-mmcv always builds them.
  real_cxx=${CXX:-c++}
  (cd "$build/src" && env "${ops_build_env[@]}" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
     PCH_REAL_CXX="$real_cxx" PCH_DIR="$build/pch" CXX="$ROOT/tools/setup/pch_cxx.sh" \
     "$PY" -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps \
     -w "$build/dist" .)
  # Publish atomically: an interrupted build leaves no half-written wheel in the cache.
  mkdir -p "$(dirname "$wheel_dir")"
  rm -rf "$wheel_dir.tmp" && mv "$build/dist" "$wheel_dir.tmp" && mv "$wheel_dir.tmp" "$wheel_dir"
  log "cached $MMCV_DIST wheel in $wheel_dir"
fi
if ! mmcv_installed; then
  # pip keeps an installed mmcv of the same version (one with other ops) over the wheel.
  "$PY" -m pip uninstall --disable-pip-version-check -y -q "$MMCV_DIST" 2>/dev/null || true
  pip_install "$wheel_dir"/$wheel_name
  echo "$MMCV_DIST $MMCV_VERSION $ops_target" > "$mmcv_ops_file"
fi

# 3. The project (editable) with the rest of the stack's pins and the test tools.
log "installing convnext_dense and the pinned $STACK OpenMMLab stack"
pip_install --no-build-isolation -e "$ROOT[$STACK,export,tests,tests-$STACK]"

check_imports
stamp_inputs | sha256sum | cut -d' ' -f1 > "$stamp_file"
log "done in $(( $(date +%s) - start )) s: $("$PY" -c 'import torch, mmcv, mmdet, mmseg, mmengine; print(f"torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}")')"
