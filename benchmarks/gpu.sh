#!/usr/bin/env bash
# Every GPU figure of issue 14 in one run (at most 6 minutes), written as one JSON.
#
# On a bare GPU machine that has PyTorch, torchvision, NumPy, OpenCV, SciPy and scikit-image, the
# other packages the run needs are installed from the wheels in .whl/ beside the repository (no
# network): only those that do not import already, with --no-deps, into a private folder. Then
# benchmarks/gpu_bench.py runs from the repository itself (no install of sam-gym).
#
#   bash benchmarks/gpu.sh --prepare [PYTHON_VERSION]   # where PyPI is reachable: fill .whl/ (default 3.12)
#   bash benchmarks/gpu.sh --out gpu-bench.json          # on the GPU machine (carry .whl/ there)
#   bash benchmarks/gpu.sh --device cpu --tiny --out x.json   # the same code on the CPU, small sizes
#
# Environment: PYTHON (default python3), SAM_GYM_WHEELS (default <repo>/.whl), SAM_GYM_SITE (the
# private install folder, default /tmp/sam-gym-site), SAM_GYM_TIME_LIMIT (seconds, default 360).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="${PYTHON:-python3}"
WHEELS="${SAM_GYM_WHEELS:-$ROOT/.whl}"
SITE="${SAM_GYM_SITE:-/tmp/sam-gym-site}"

# distribution==version import-name: what the run imports beyond the bare machine's packages
# (timm needs neither huggingface_hub, safetensors nor PyYAML for the models built here).
PACKAGES=(
  "gymnasium==1.4.0 gymnasium"
  "cloudpickle==3.1.3 cloudpickle"
  "farama-notifications==0.0.6 farama_notifications"
  "typing-extensions==4.16.0 typing_extensions"
  "tqdm==4.70.1 tqdm"
  "segment-anything==1.0 segment_anything"
  "mobilesam-mirror==1.0.0 mobile_sam"
  "timm==1.0.31 timm"
  "stable-baselines3==2.9.2 stable_baselines3"
  "sb3-contrib==2.9.2 sb3_contrib"
)

if [[ "${1:-}" == "--prepare" ]]; then
  version="${2:-3.12}"
  mkdir -p "$WHEELS"
  specs=()
  for entry in "${PACKAGES[@]}"; do specs+=("${entry%% *}"); done
  # Every one of these is pure Python (py3-none-any), so one download serves any x86-64 or Arm machine.
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d "$WHEELS" "${specs[@]}"
  echo "wheels for Python $version in $WHEELS:"
  ls -1 "$WHEELS"
  exit 0
fi

# One interpreter finds (without importing) the modules that are not there; an interpreter that fails counts all missing.
mapfile -t missing < <("$PY" -c '
import importlib.util, sys
for entry in sys.argv[1:]:
    spec, module = entry.split()
    if importlib.util.find_spec(module) is None:
        print(spec)' "${PACKAGES[@]}" 2>/dev/null || for entry in "${PACKAGES[@]}"; do echo "${entry%% *}"; done)
if ((${#missing[@]})); then
  if [[ ! -d "$WHEELS" ]]; then
    echo "gpu.sh: error: missing ${missing[*]} and no wheel folder $WHEELS; run 'bash benchmarks/gpu.sh --prepare' where PyPI is reachable and carry .whl/" >&2
    exit 2
  fi
  echo "installing from $WHEELS into $SITE: ${missing[*]}"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    --find-links "$WHEELS" "${missing[@]}"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$ROOT"
exec timeout "${SAM_GYM_TIME_LIMIT:-360}" "$PY" "$HERE/gpu_bench.py" "$@"
