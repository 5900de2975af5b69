#!/usr/bin/env bash
# The GPU check, ready for the first GPU machine: one script, under 8 minutes on one GPU.
#
#   benchmarks/gpu.sh OUTDIR                # on a CUDA machine
#   benchmarks/gpu.sh --cpu-smoke OUTDIR    # the same steps, tiny, on the CPU (what a test runs)
#
# Needs PyTorch, torchvision, timm, pandas, pyarrow and PyYAML (pytest for the first step);
# no Ray, no Optuna, no network: the repository goes on PYTHONPATH and commands run as
# `python -m bench ...` (nothing on this path imports Ray).
# $PYTHON chooses the interpreter (default: python3). Steps, each under its own time limit (on a
# GPU the limits add up to 7 min):
#   1. tests     the `gpu`-marked tests (those that need no Ray)
#   2. eager     `bench run`: ResNet-18 (CIFAR stem) on `synthetic_images` (50k CIFAR-shaped
#                images), batch 512, 3 epochs, bf16 autocast + channels_last (bench.train on CUDA)
#   3. compiled  the same with `compile=true` (torch.compile; epoch 1 includes compiling)
#   4. pipeline  views/s of the harness's on-device pipeline vs a torchvision DataLoader feed
#                (benchmarks/pipeline.py) on the same GPU
#   5. share     4 trials at 0.25 of the GPU each, memory capped as Ray sweeps cap it
#                (set_per_process_memory_fraction): aggregate views/s, peak memory
#                (benchmarks/gpu_share.py), against one trial alone
# Writes OUTDIR/<step>.log, the steps' JSON, OUTDIR/steps.jsonl (exit status and seconds per
# step) and OUTDIR/summary.json; prints the summary. Exit status: 0 if every step passed.
set -uo pipefail

usage() { echo "usage: $0 [--cpu-smoke] OUTDIR" >&2; exit 2; }
MODE=gpu
if [[ "${1:-}" == "--cpu-smoke" ]]; then MODE=cpu; shift; fi
[[ $# -eq 1 && -n "$1" ]] || usage
OUT=$1
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
: > "$OUT/steps.jsonl"
FAILED=0

# step NAME SECONDS COMMAND...: run it under `timeout`, its output in OUTDIR/NAME.log.
step() {
  local name=$1 limit=$2 start rc
  shift 2
  echo "== $name (at most ${limit}s): $*"
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - start )), \"limit_s\": $limit}" >> "$OUT/steps.jsonl"
  if [[ $rc -ne 0 ]]; then
    FAILED=1
    echo "   failed (exit $rc; 124: over its time limit); last lines of $OUT/$name.log:"
    tail -n 5 "$OUT/$name.log" | sed 's/^/   | /'
  fi
}

skip() {  # skip NAME REASON
  echo "== $1: skipped ($2)"
  echo "{\"step\": \"$1\", \"skipped\": \"$2\"}" >> "$OUT/steps.jsonl"
}

step environment 30 "$PY" - "$MODE" "$OUT/environment.json" <<'EOF'
import json, os, platform, sys
import torch, torchvision, timm, pandas, pyarrow
mode, out = sys.argv[1], sys.argv[2]
env = {"mode": mode, "python": platform.python_version(), "torch": torch.__version__,
       "torchvision": torchvision.__version__, "timm": timm.__version__,
       "pandas": pandas.__version__, "pyarrow": pyarrow.__version__, "cpus": os.cpu_count(),
       "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
       "load_average": os.getloadavg()}
for name in ("ray", "optuna", "pytest"):
    try:
        __import__(name)
        env[f"{name}_installed"] = True
    except ImportError:
        env[f"{name}_installed"] = False
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    env.update(device_name=props.name, device_memory_gb=props.total_memory / 2**30,
               capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported())
json.dump(env, open(out, "w"), indent=2)
print(json.dumps(env))
if mode == "gpu" and not torch.cuda.is_available():
    sys.exit("no CUDA device: run with --cpu-smoke for the CPU version")
EOF

if [[ $MODE == gpu ]]; then
  DEVICE=cuda
  RUN_ARGS=(epochs=3 batch_size=512 probe_epochs=5 eval_every=3)
  PIPE_ARGS=(--n 16384 --batch 512 --epochs 2)
  SHARE_ARGS=(--trials 4 --n 16384 --batch 512 --epochs 3)
  LIMITS=(70 50 130 60 80)
else  # tiny: 8x8 images, a few steps; every step's code path on two CPU cores
  DEVICE=cpu
  # One intra-op thread: on a busy machine two OpenMP threads spin-wait for each other and run
  # ~15x slower than one (measured on the 2-core CI machine under load).
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  RUN_ARGS=(epochs=1 batch_size=8 probe_epochs=1 knn_k=5 geometry_samples=16
            dataset_params.n_train=32 dataset_params.n_test=16 dataset_params.size=8)
  PIPE_ARGS=(--n 32 --batch 8 --epochs 1 --workers 0 --size 8)
  SHARE_ARGS=(--trials 2 --n 32 --batch 8 --epochs 1 --size 8)
  LIMITS=(240 240 240 240 240)  # generous: a shared CI machine may be busy
fi

if [[ $MODE == cpu ]]; then
  skip tests "CPU smoke run: the gpu tests need CUDA"
elif ! "$PY" -c "import pytest" 2>/dev/null; then
  skip tests "pytest is not installed"
else
  TESTS=(tests/losses/test_contract.py tests/data/test_loader.py tests/data/test_augment.py
         tests/test_metrics.py)
  if "$PY" -c "import ray" 2>/dev/null; then TESTS+=(tests/test_sweep.py); fi  # its gpu test needs Ray
  step tests "${LIMITS[0]}" "$PY" -m pytest -q -p no:cacheprovider -m gpu \
    --continue-on-collection-errors "${TESTS[@]}"
fi

RUN=("$PY" -m bench run dataset=synthetic_images backbone=resnet18 cifar_stem=true
     loss=infonce lr=0.3 "device=$DEVICE" "${RUN_ARGS[@]}")
step eager "${LIMITS[1]}" "${RUN[@]}" --json "$OUT/eager.json"
if [[ $MODE == gpu ]]; then
  step compiled "${LIMITS[2]}" "${RUN[@]}" compile=true --json "$OUT/compiled.json"
else
  skip compiled "CPU smoke run: torch.compile's C++ build takes minutes on two cores"
fi
step pipeline "${LIMITS[3]}" "$PY" benchmarks/pipeline.py --device "$DEVICE" "${PIPE_ARGS[@]}" \
  --out "$OUT/pipeline.json"
step share "${LIMITS[4]}" "$PY" benchmarks/gpu_share.py --device "$DEVICE" "${SHARE_ARGS[@]}" \
  --out "$OUT/share.json"

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])

def load(name):
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else None

def run_numbers(run):
    if not run or not run.get("records"):
        return None
    by_epoch = {}
    for r in run["records"]:
        by_epoch.setdefault(r["epoch"], r)
    epochs = [by_epoch[e] for e in sorted(by_epoch)]
    return {"status": run["status"], "epochs": len(epochs),
            "views_per_s_by_epoch": [2 * r["m_images_per_s"] for r in epochs],
            "views_per_s_last_epoch": 2 * epochs[-1]["m_images_per_s"],
            "epoch_time_s_by_epoch": [r["m_epoch_time_s"] for r in epochs],
            "peak_mem_mb": max(r["m_peak_mem_mb"] for r in epochs),
            "knn_top1": epochs[-1].get("m_knn_top1")}

steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
summary = {"environment": load("environment.json"), "steps": steps,
           "eager": run_numbers(load("eager.json")), "compiled": run_numbers(load("compiled.json")),
           "pipeline": load("pipeline.json"), "share": load("share.json")}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print("== summary (" + str(out / "summary.json") + ")")
for s in steps:
    print(f"   {s['step']:<12} " + (f"skipped: {s['skipped']}" if "skipped" in s
                                    else f"exit {s['rc']} in {s['seconds']} s"))
for name in ("eager", "compiled"):
    n = summary[name]
    if n:
        print(f"   bench run {name}: {n['views_per_s_last_epoch']:,.0f} views/s (last epoch), "
              f"peak {n['peak_mem_mb']:,.0f} MiB")
p = summary["pipeline"]
if p:
    print(f"   pipeline: bench {p['views_per_s_bench']:,.0f} views/s vs torchvision DataLoader "
          f"{p['views_per_s_torchvision_dataloader']:,.0f} ({p['ratio']:.2f}x)")
s = summary["share"]
if s and "shared_vs_alone" in s:
    shared, alone = s["shared"], s["alone"]
    print(f"   share: {s['trials']} x {s['share']:g}: {shared['aggregate_views_per_s']:,.0f} "
          f"views/s vs {alone['aggregate_views_per_s']:,.0f} alone")
    if shared["peak_reserved_mb"]:
        print(f"   share: peak {shared['peak_reserved_mb']:,.0f} MiB reserved per process, cap "
              f"{shared['processes'][0].get('cap_mb', 0):,.0f} MiB")
EOF
exit $FAILED
