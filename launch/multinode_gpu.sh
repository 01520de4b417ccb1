#!/usr/bin/env bash
# Runs jaxdiff on several GPU machines without a scheduler: one process per machine that drives
# all of its GPUs, started by hand (or by any tool that can run a command on every machine).
#
# On every machine, with jaxdiff and jax[cuda13] (or jax[cuda12]) installed in the active Python
# environment, run the same line with that machine's --node-rank (relative paths are taken from
# the repository root):
#
#   launch/multinode_gpu.sh --coordinator=HOST0:PORT --num-nodes=N --node-rank=R \
#       --config=configs/METHOD.py[:PRESET] --workdir=DIR [--data-dir=DIR] [--python=PYTHON] \
#       [--dry-run] [-- MORE_MAIN_FLAGS ...]
#
# HOST0 is an address of the rank-0 machine that the others can reach and PORT a free TCP port
# on it (e.g. 12345): JAX's coordination service listens there. DIR must be the same shared
# directory (NFS, Lustre) or gs:// path on every machine. The machines may start in any order
# within JAX's initialisation timeout (5 minutes): they wait for each other. To resume after a
# failure, run the same lines again: training continues from the workdir's latest checkpoint.
# --dry-run (or DRY_RUN=1) prints the environment and the command instead of running them. The
# XLA and NCCL settings are explained in launch/gpu_env.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=gpu_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COORDINATOR=""
NUM_NODES=""
NODE_RANK=""
while (($#)); do
  case "$1" in
    --coordinator=*) COORDINATOR="${1#*=}" ;;
    --num-nodes=*) NUM_NODES="${1#*=}" ;;
    --node-rank=*) NODE_RANK="${1#*=}" ;;
    --) shift; MAIN_FLAGS=("$@"); break ;;
    *) parse_common_option "$1" || die "Unknown option '$1'; see the usage at the top of this script." ;;
  esac
  shift
done

check_common_options
[[ "$COORDINATOR" =~ ^[^:[:space:]]+:[0-9]+$ ]] || die "--coordinator=HOST:PORT is required (the rank-0 machine and a free port), got '$COORDINATOR'."
[[ "$NUM_NODES" =~ ^[1-9][0-9]*$ ]] || die "--num-nodes must be a positive integer, got '$NUM_NODES'."
if ! [[ "$NODE_RANK" =~ ^[0-9]+$ ]] || ((NODE_RANK >= NUM_NODES)); then
  die "--node-rank must be an integer from 0 to $((NUM_NODES - 1)), got '$NODE_RANK'."
fi

LAUNCH_FLAGS=("--coordinator_address=$COORDINATOR" "--num_processes=$NUM_NODES" "--process_id=$NODE_RANK")
build_main_command
run_or_print "${MAIN_COMMAND[@]}"
