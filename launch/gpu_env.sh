# shellcheck shell=bash
# Shared by launch/slurm_gpu.sbatch and launch/multinode_gpu.sh (sourced, not run): the GPU
# environment every jaxdiff process gets, the options both launchers accept, and dry-run output.
# Every variable below keeps a value the user already exported.

# JAX preallocates this fraction of each GPU's memory when it starts (JAX's default is 0.75).
# 0.9 gives the model and activations more room while leaving about 10% for what lives outside
# XLA's pool: the CUDA context, cuBLAS/cuDNN workspaces and NCCL's communication buffers. Lower it
# if NCCL or cuDNN report out-of-memory errors at start-up.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"

# --xla_gpu_enable_latency_hiding_scheduler=true lets XLA schedule the all-gathers and
# reduce-scatters of FSDP sharding and the gradient all-reduce of data parallelism to overlap
# with computation instead of waiting for each collective; it matters most across nodes, where
# the network is slower than NVLink. Flags the user put in XLA_FLAGS are kept after it.
export XLA_FLAGS="--xla_gpu_enable_latency_hiding_scheduler=true${XLA_FLAGS:+ $XLA_FLAGS}"

# NCCL_DEBUG=WARN prints NCCL's warnings (failed transports, fallbacks from InfiniBand to TCP
# sockets) without its per-call chatter; use INFO to see which network NCCL picked.
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"

# Left unset on purpose, because the right values depend on the cluster's network; set them
# before launching when NCCL picks the wrong network or is slow across nodes:
#   NCCL_SOCKET_IFNAME  interface for NCCL's bootstrap and socket traffic (e.g. eth0, or ^lo,docker
#                       to exclude); a wrong guess such as a docker bridge makes multi-node runs
#                       hang at start-up.
#   NCCL_IB_HCA         InfiniBand / RoCE adapters NCCL may use (e.g. mlx5_0,mlx5_1); without
#                       InfiniBand NCCL falls back to TCP sockets, several times slower.
#   NCCL_IB_GID_INDEX   the GID index RoCE needs on some Ethernet fabrics (often 3).
GPU_ENV_VARIABLES=(XLA_PYTHON_CLIENT_MEM_FRACTION XLA_FLAGS NCCL_DEBUG NCCL_SOCKET_IFNAME
                   NCCL_IB_HCA NCCL_IB_GID_INDEX JAX_LOCAL_DEVICE_IDS)

CONFIG=""
WORKDIR=""
DATA_DIR=""
PYTHON="${PYTHON:-python3}"
DRY_RUN="${DRY_RUN:-0}"
MAIN_FLAGS=()     # flags after --, passed through to jaxdiff.main
LAUNCH_FLAGS=()   # flags a launcher adds itself (multinode_gpu.sh: the coordinator settings)

# Prints one sentence and exits with the usage-error status.
die() {
  echo "$(basename "$0"): $*" >&2
  exit 2
}

# Empty arrays under `set -u` need bash 4.4 or newer.
((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 404)) || die "This script needs bash 4.4 or newer, not $BASH_VERSION."

# Consumes one option both launchers share; returns 1 for any other option.
parse_common_option() {
  case "$1" in
    --config=*) CONFIG="${1#*=}" ;;
    --workdir=*) WORKDIR="${1#*=}" ;;
    --data-dir=*) DATA_DIR="${1#*=}" ;;
    --python=*) PYTHON="${1#*=}" ;;
    --dry-run) DRY_RUN=1 ;;
    *) return 1 ;;
  esac
}

# Checks the shared options after parsing.
check_common_options() {
  [[ -n "$CONFIG" ]] || die "--config=configs/METHOD.py[:PRESET] is required."
  [[ -n "$WORKDIR" ]] || die "--workdir=DIR is required (a directory every node can reach)."
  [[ "$DRY_RUN" == 0 || "$DRY_RUN" == 1 ]] || die "DRY_RUN must be 0 or 1, not '$DRY_RUN'."
  local flag
  for flag in "${MAIN_FLAGS[@]}"; do
    [[ "$flag" != --dry-run ]] || die "Put --dry-run before --; every flag after -- goes to jaxdiff.main."
    [[ "$flag" == --* ]] || die "'$flag' after -- is not a flag; pass flags such as --config.train.num_steps=1000."
  done
}

# Fills MAIN_COMMAND with the jaxdiff.main invocation.
build_main_command() {
  MAIN_COMMAND=("$PYTHON" -m jaxdiff.main "--config=$CONFIG" "--workdir=$WORKDIR")
  [[ -z "$DATA_DIR" ]] || MAIN_COMMAND+=("--config.data.data_dir=$DATA_DIR")
  MAIN_COMMAND+=("${LAUNCH_FLAGS[@]}" "${MAIN_FLAGS[@]}")
}

# With DRY_RUN=1 prints the environment and the command, shell-quoted; otherwise runs the command.
run_or_print() {
  if [[ "$DRY_RUN" == 1 ]]; then
    local name
    for name in "${GPU_ENV_VARIABLES[@]}"; do
      [[ -z "${!name:-}" ]] || printf 'export %s=%q\n' "$name" "${!name}"
    done
    local quoted
    printf -v quoted '%q ' "$@"
    echo "${quoted% }"
  else
    "$@"
  fi
}
