#!/usr/bin/env bash
# The DDP variant of array.sh: each array task trains its trials on GPUS GPUs of one node
# (default 4) with torchrun; rank 0 is the Optuna worker and hands each trial to the other ranks.
#
#   STORAGE=postgresql://sweep@db-host/sweeps WORKERS=4 GPUS=4 N_TRIALS=40 \
#       sweeps/slurm/ddp.sh sweeps/tokenizer.yaml tok [key=value ...]
#
# Same environment as array.sh (DRY_RUN=1 prints the commands).
set -euo pipefail
GPUS=${GPUS:-4} exec "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/array.sh" "$@"
