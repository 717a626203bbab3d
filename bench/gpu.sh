#!/usr/bin/env bash
# The GPU rows of BENCHMARKS.md, in one go (about 12 minutes on one H100/H200):
#   bash bench/gpu.sh OUT_DIR [CACHE_DIR]
# 1. bf16-mixed against fp32: the same short `tiny` run (seed, data, steps) in each precision,
#    its last validation bound side by side (issue: < 1 % apart where bf16 is native);
# 2. training throughput and utilisation against the reference, bf16-mixed and fp32;
# 3. the same at 8x the batch (GPU-sized), with torch.compile; cost against length;
# 4. sampling throughput at 200 and 2,048 bp.
# 5. `d3lm sample` on the GPU: the paper's 10,000 x 2,048-bp job.
# Each step writes into OUT_DIR as it finishes, so a run cut short keeps what it measured;
# STEPS="2 5" runs only those steps.
set -u
out=${1:?usage: bash bench/gpu.sh OUT_DIR [CACHE_DIR]}
cache=${2:-.cache/d3lm}
py=${PYTHON:-python3}
mkdir -p "$out"
steps=${STEPS:-1 2 3 4 5}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt"
step() { [[ " $steps " == *" $1 "* ]]; }

step 1 && for precision in bf16-mixed 32-true; do
  timeout 150 "$py" -m d3lm.cli train --scale tiny experiment=bench-precision run="$precision" \
    runs_dir="$out/runs" cache_dir="$cache" trainer.precision="$precision" \
    trainer.enable_progress_bar=false > "$out/train-$precision.log" 2>&1
  cp "$out/runs/bench-precision/$precision/logs/version_0/metrics.csv" \
    "$out/metrics-$precision.csv" 2>/dev/null
done

step 2 && timeout 200 "$py" bench/bench_training.py --device cuda --precision bf16-mixed \
  32-true --repeats 10 --csv "$out/training-cuda.csv" > "$out/training-cuda.md" 2>&1
step 3 && timeout 300 "$py" bench/bench_training.py --device cuda --precision bf16-mixed 32-true \
  --repeats 10 --batch-scale 8 --compile --csv "$out/training-cuda-x8.csv" \
  > "$out/training-cuda-x8.md" 2>&1
step 3 && timeout 150 "$py" bench/bench_training.py --device cuda --precision bf16-mixed \
  --repeats 10 --no-reference --scaling --figure "$out/training-cost-cuda.png" \
  > "$out/scaling-cuda.md" 2>&1
step 4 && for bp in 200 2048; do
  timeout 60 "$py" bench/bench_sampling.py --random-init --device cuda --bf16 --bp "$bp" \
    --n 1000 --baseline-n 256 --presets random --steps 50 --batch-size 250 \
    > "$out/sampling-cuda-$bp.md" 2>&1
done

# 5. `d3lm sample` as a user runs it on the GPU (sample.device auto): the paper's job, 10,000 x
#    2,048 bp, from throwaway `tiny` and `nt-v2-50m` runs (trained 2 steps on synthetic data: the
#    weights decide which tokens are drawn, not what a step costs), fp32 and bf16 autocast.
timed() { "$py" -c 'import subprocess, sys, time
t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode
print(f"{time.perf_counter() - t:.1f} s wall, exit {rc}")' "$@"; }
step 5 && for preset in tiny nt-v2-50m; do
  timeout 120 "$py" -m d3lm.cli train --scale tiny data.dataset=markov experiment=bench-sample \
    run="$preset" runs_dir="$out/runs" cache_dir="$cache" model.preset="$preset" \
    model.params.tie_embeddings=false model.params.nucleotide_embeddings=false \
    trainer.max_steps=2 trainer.val_check_interval=2 trainer.enable_progress_bar=false \
    > "$out/sample-train-$preset.log" 2>&1
  for autocast in null bfloat16; do
    timed timeout 200 "$py" -m d3lm.cli sample "$out/runs/bench-sample/$preset" --n 10000 \
      --bp 2048 sample.batch_size=500 sample.autocast="$autocast" sample.progress=false \
      > "$out/sample-$preset-$autocast.log" 2>&1
  done
done
