#!/usr/bin/env bash
# Every benchmark's real-size GPU variant in one go, for a lent GPU machine where device time is scarce.
# Usage (repo root): OUT=/some/dir bash benchmarks/gpu_run.sh
# Optional: a folder .whl/ of wheels for packages the machine lacks (diffusers, open_clip_torch, lpips,
# torch-fidelity, ...), installed into /tmp/site first. JSON results and one log land in $OUT.
set -u
OUT=${OUT:-/tmp/gill-eval-gpu}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD" || exit 1
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
log="$OUT/all.log"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c 'import torch; print("torch", torch.__version__)'; } > "$OUT/gpu.txt" 2>&1
run() {  # name, time limit (s), command...
  local name=$1 limit=$2; shift 2
  echo "=== $name $(date +%T)" >> "$log"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.json" 2>> "$log"
  echo "=== $name rc=$? ${SECONDS}s elapsed=$((SECONDS - t0))s" >> "$log"
}
for stage in ${STAGES:-features sd gill scoring}; do
  case $stage in
    features) run features "${T_FEATURES:-120}" python3 benchmarks/features.py --device cuda --real-size --quick ;;
    sd) run sd "${T_SD:-110}" python3 benchmarks/sd_generate.py --device cuda --real-size --quick ;;
    gill) run gill "${T_GILL:-150}" python3 benchmarks/gill_generate.py --device cuda --real-size --quick ;;
    gill-vist) run gill-vist "${T_GILL_VIST:-240}" python3 benchmarks/gill_generate.py --device cuda --real-size \
      --vist --stories 16 --vist-repeats 2 ;;
    scoring) run scoring "${T_SCORING:-90}" python3 benchmarks/scoring.py --device cuda --real-size --quick ;;
  esac
done
tail -n 5 "$log"
