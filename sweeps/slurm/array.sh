#!/usr/bin/env bash
# A SLURM array of Optuna workers on one study: task i runs `d3lm sweep ... --worker i`, and the
# study stops when it has N_TRIALS finished trials counted over all tasks. A killed task's trial
# is failed by the heartbeat and retried by another task. A task stopped by SIGTERM (pre-emption,
# or --signal 120 s before its time limit) fails its trial and queues it again in the study at
# once, exits 143 and is requeued (--requeue; this script requeues it after a time limit), so it
# comes back as a worker of the same study.
#
#   STORAGE=journal:///shared/sweeps/lr.log WORKERS=8 N_TRIALS=40 \
#       sweeps/slurm/array.sh sweeps/lr_warmup.yaml lr [key=value ...]
#
# Run it on the login node: it submits itself as an array of WORKERS tasks (sbatch), and inside a
# task it runs that task's worker. Environment:
#   STORAGE    journal:///FILE on a shared filesystem, or postgresql://user@host/db (required)
#   N_TRIALS   finished trials the study stops at (required)
#   WORKERS    array tasks (default 4); GPUS: GPUs per task (default 1; > 1 trains each trial
#              with DDP through torchrun, see ddp.sh)
#   HEARTBEAT  seconds between a worker's heartbeats (default 60; stale after 3 beats)
#   D3LM       the d3lm command (default: d3lm on PATH); PYTHON for torchrun (default: python)
#   SBATCH_ARGS extra sbatch options (partition, account, time, ...)
#   DRY_RUN=1  print the sbatch command and every task's command instead of running them
#
#SBATCH --job-name=d3lm-sweep
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:TERM@120
#SBATCH --output=slurm-%x-%A_%a.out
set -euo pipefail

if (($# < 2)); then
    echo "usage: STORAGE=URL N_TRIALS=N [WORKERS=K] $0 SPACE.yaml STUDY [key=value ...]" >&2
    exit 2
fi
space=$1 study=$2
shift 2
: "${STORAGE:?set STORAGE=journal:///shared/FILE.log or postgresql://...}"
: "${N_TRIALS:?set N_TRIALS=N, the finished trials the study stops at}"
workers=${WORKERS:-4} gpus=${GPUS:-1} heartbeat=${HEARTBEAT:-60} d3lm=${D3LM:-d3lm}

quoted() {  # the arguments as one shell-quoted line
    local line
    line=$(printf '%q ' "$@")
    echo "${line% }"
}

task_command() {  # the command of array task $1 (then the key=value overrides)
    local task=$1 cmd=("$d3lm")
    shift
    if ((gpus > 1)); then
        cmd=("${PYTHON:-python}" -m torch.distributed.run --standalone --nproc-per-node "$gpus"
             -m d3lm.cli)
    fi
    cmd+=(sweep "$space" --study "$study" --storage "$STORAGE" --n-trials "$N_TRIALS"
          --worker "$task" --heartbeat "$heartbeat" "$@")
    if ((gpus > 1)); then
        cmd+=("trainer.devices=$gpus" trainer.strategy=ddp)
    fi
    quoted "${cmd[@]}"
}

if [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then  # inside a task: this task's worker
    command=$(task_command "$SLURM_ARRAY_TASK_ID" "$@")
    if [[ -n "${DRY_RUN:-}" ]]; then echo "$command"; exit; fi
    # --signal=B: signals this shell, not its children: hand SIGTERM on to the worker
    eval "exec $command" &
    worker=$!
    trap 'kill -TERM "$worker" 2>/dev/null' TERM
    status=0
    wait "$worker" || status=$?
    if kill -0 "$worker" 2>/dev/null; then  # the trap ended the wait: wait for the worker itself
        status=0
        wait "$worker" || status=$?
    fi
    if ((status == 143)) && [[ -n "${SLURM_JOB_ID:-}" ]]; then
        scontrol requeue "$SLURM_JOB_ID" || echo "scontrol requeue failed: resubmit the task" >&2
    fi
    exit "$status"
fi

if [[ $STORAGE == sqlite* ]] && ((workers > 1)); then
    echo "warning: SQLite locking is unreliable across nodes; use journal:// or postgresql://" >&2
fi
# The tasks inherit this environment (sbatch's default --export=ALL): STORAGE, N_TRIALS, ...
export STORAGE N_TRIALS GPUS=$gpus HEARTBEAT=$heartbeat D3LM=$d3lm
# shellcheck disable=SC2086  # SBATCH_ARGS is a list of options
submit=(sbatch --array="0-$((workers - 1))" --gres="gpu:$gpus" ${SBATCH_ARGS:-}
        "$(realpath --relative-base="$PWD" "${BASH_SOURCE[0]}")" "$space" "$study" "$@")
if [[ -z "${DRY_RUN:-}" ]]; then
    exec "${submit[@]}"
fi
quoted "${submit[@]}"
for ((task = 0; task < workers; task++)); do
    echo "task $task: $(task_command "$task" "$@")"
done
