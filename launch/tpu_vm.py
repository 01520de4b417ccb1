#!/usr/bin/env python3
"""Runs jaxdiff on a Cloud TPU VM or pod slice: create, set up, run, follow, stop, delete it.

Every subcommand takes the TPU's --name, --zone and --project and prints, instead of running,
the exact commands with --dry-run. Run it from a machine where `gcloud` is installed and logged
in (`gcloud auth login`); it needs only the Python standard library.

  python launch/tpu_vm.py create --name=NAME --zone=ZONE --project=PROJECT \
      --accelerator-type=v5litepod-16 [--version=RUNTIME] [--spot | --preemptible]
  python launch/tpu_vm.py setup  ... [--git-url=URL [--git-ref=REF]] [--python-version=3.12]
  python launch/tpu_vm.py run    ... --config=configs/M.py:PRESET --workdir=gs://BUCKET/DIR \
      [--data-dir=gs://BUCKET/tfds] [-- --config.a.b=v ...]
  python launch/tpu_vm.py logs   ... [--worker=0] [--lines=100]
  python launch/tpu_vm.py status ...
  python launch/tpu_vm.py stop   ...
  python launch/tpu_vm.py delete ...

`setup` copies this checkout (or clones --git-url) to ~/jaxdiff on every worker and installs it
with `jax[tpu]` into ~/jaxdiff-venv (a Python from uv, since TPU runtime images ship an older
Python than JAX needs). `run` starts the same detached command on every worker, appending to
~/jaxdiff-run.log; after a preemption or a `stop`, the same `run` resumes from the workdir's latest
checkpoint. A workdir and data directory on gs:// are required because the workers of a pod
share nothing else and a deleted VM loses its disk.
"""

import argparse
import os
import re
import shlex
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runtime (software) version per TPU generation, from https://cloud.google.com/tpu/docs/runtimes.
RUNTIME_BY_GENERATION = {
    "v6e": "v2-alpha-tpuv6e",
    "v5p": "v2-alpha-tpuv5",
    "v5litepod": "v2-alpha-tpuv5-lite",
    "v4": "tpu-ubuntu2204-base",
    "v3": "tpu-ubuntu2204-base",
    "v2": "tpu-ubuntu2204-base",
}

REMOTE_CODE_DIR = "~/jaxdiff"
REMOTE_VENV = "~/jaxdiff-venv"
REMOTE_ARCHIVE = "jaxdiff-src.tar.gz"  # relative to the remote home directory
REMOTE_LOG = "~/jaxdiff-run.log"
REMOTE_PID = "~/jaxdiff-run.pid"
UV = "~/.local/bin/uv"

TPU_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
ZONE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
ACCELERATOR_TYPE = re.compile(r"^(v[0-9]+[a-z]*)-([0-9]+)$")
PYTHON_VERSION = re.compile(r"^3\.[0-9]+$")


def gcloud_tpu(verb, args, *extra, positionals=None):
    """`gcloud compute tpus tpu-vm VERB NAME --zone --project` followed by `extra` flags.

    `positionals` replaces NAME (scp takes SOURCE NAME:DESTINATION instead).
    """
    return ["gcloud", "compute", "tpus", "tpu-vm", verb, *(positionals or [args.name]),
            f"--zone={args.zone}", f"--project={args.project}", *extra]


def ssh(args, remote_command, worker="all"):
    """One ssh command run on `worker` ("all" runs it on every worker of the slice at once)."""
    return gcloud_tpu("ssh", args, f"--worker={worker}", f"--command={remote_command}")


def default_runtime(accelerator_type):
    """The runtime version for an accelerator type such as v5litepod-16, or None if unknown."""
    generation = ACCELERATOR_TYPE.match(accelerator_type).group(1)
    return RUNTIME_BY_GENERATION.get(generation)


def create_commands(args):
    """`tpu-vm create` for the slice; spot or preemptible capacity when asked."""
    version = args.version or default_runtime(args.accelerator_type)
    command = [*gcloud_tpu("create", args), f"--accelerator-type={args.accelerator_type}",
               f"--version={version}"]
    if args.spot:
        command.append("--spot")
    if args.preemptible:
        command.append("--preemptible")
    return [command]


def install_command(python_version):
    """Remote shell line: a uv-managed Python venv with jaxdiff (editable), jax[tpu] and gcsfs.

    uv comes from pip, or from its installer where the system Python refuses user installs
    (PEP 668). gcsfs lets tfds and orbax read and write gs:// paths without TensorFlow.
    """
    return (f"{{ python3 -m pip install --user --quiet --upgrade uv || "
            f"curl -LsSf https://astral.sh/uv/install.sh | sh; }} && "
            f"{UV} venv --clear --python {python_version} {REMOTE_VENV} && "
            f"{UV} pip install --python {REMOTE_VENV}/bin/python -e {REMOTE_CODE_DIR} "
            f"'jax[tpu]' gcsfs")


def setup_commands(args):
    """Puts the code on every worker (copy of this checkout or a git clone), then installs it."""
    install = install_command(args.python_version)
    if args.git_url:
        clone = (f"rm -rf {REMOTE_CODE_DIR} && git clone --quiet {shlex.quote(args.git_url)} "
                 f"{REMOTE_CODE_DIR} && git -C {REMOTE_CODE_DIR} checkout --quiet "
                 f"{shlex.quote(args.git_ref)}")
        return [ssh(args, f"{clone} && {install}")]
    archive = os.path.join("/tmp", f"{args.name}-{REMOTE_ARCHIVE}")
    pack = ["tar", "-czf", archive, "--exclude=.git", "--exclude=.venv", "--exclude=__pycache__",
            "--exclude=*.egg-info", "--exclude=./runs", "-C", REPO_ROOT, "."]
    copy = gcloud_tpu("scp", args, "--worker=all",
                      positionals=[archive, f"{args.name}:{REMOTE_ARCHIVE}"])
    unpack = (f"rm -rf {REMOTE_CODE_DIR} && mkdir -p {REMOTE_CODE_DIR} && "
              f"tar -xzf ~/{REMOTE_ARCHIVE} -C {REMOTE_CODE_DIR}")
    return [pack, copy, ssh(args, f"{unpack} && {install}")]


def main_command(args):
    """The training command every worker runs, identical on all of them."""
    flags = [f"--config={args.config}", f"--workdir={args.workdir}"]
    if args.data_dir:
        flags.append(f"--config.data.data_dir={args.data_dir}")
    flags.extend(args.main_flags)
    return f"{REMOTE_VENV}/bin/python -m jaxdiff.main " + shlex.join(flags)


def run_commands(args):
    """Starts main detached (own session, survives the ssh) on every worker; refuses a second run.

    The pid file holds the session id, so `stop` can signal the run's whole process group.
    """
    remote = (f"cd {REMOTE_CODE_DIR} || exit 1; "
              f"if [ -f {REMOTE_PID} ] && kill -0 \"$(cat {REMOTE_PID})\" 2>/dev/null; then "
              f"echo \"jaxdiff is already running on $(hostname); stop it first.\" >&2; exit 1; fi; "
              f"setsid nohup {main_command(args)} >> {REMOTE_LOG} 2>&1 < /dev/null & "
              f"echo $! > {REMOTE_PID}")
    return [ssh(args, remote)]


def logs_commands(args):
    """Follows one worker's log (worker 0 by default: process 0 logs the metrics)."""
    return [ssh(args, f"tail -n {args.lines} -F {REMOTE_LOG}", worker=args.worker)]


def stop_commands(args):
    """Sends SIGTERM to the run's process group on every worker (the loop saves and exits)."""
    remote = (f"if [ -f {REMOTE_PID} ] && kill -TERM -- -\"$(cat {REMOTE_PID})\" 2>/dev/null; "
              f"then echo \"stopping jaxdiff on $(hostname)\"; "
              f"else echo \"no jaxdiff run on $(hostname)\"; fi; rm -f {REMOTE_PID}")
    return [ssh(args, remote)]


def status_commands(args):
    """Prints the VM's state: READY, CREATING, PREEMPTED (recreate it), ..."""
    return [gcloud_tpu("describe", args, "--format=value(state)")]


def delete_commands(args):
    """Deletes the VM or slice (no prompt); checkpoints and data on gs:// stay."""
    return [gcloud_tpu("delete", args, "--quiet")]


def _pattern(regex, what):
    """An argparse type accepting strings that match `regex`, rejecting others in one sentence."""
    def check(value):
        if not regex.match(value):
            raise argparse.ArgumentTypeError(f"{value!r} is not a valid {what}.")
        return value
    return check


def _gcs_path(value):
    if not value.startswith("gs://") or len(value) <= len("gs://"):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a gs:// path; every worker of a pod must read and write the same "
            "storage.")
    return value


def _non_negative_int(value):
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a non-negative integer.")
    return int(value)


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", required=True, type=_pattern(TPU_NAME, "TPU name (lowercase "
                        "letters, digits and hyphens, starting with a letter, at most 63)"))
    common.add_argument("--zone", required=True, type=_pattern(ZONE, "zone such as us-central2-b"))
    common.add_argument("--project", required=True, type=_pattern(
        re.compile(r"^[a-z][-a-z0-9.:]{4,}[a-z0-9]$"), "Google Cloud project id"))
    common.add_argument("--dry-run", action="store_true",
                        help="print the commands instead of running them")

    parser = argparse.ArgumentParser(prog="tpu_vm.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

    create = sub.add_parser("create", parents=[common], help="create the TPU VM or pod slice")
    create.add_argument("--accelerator-type", required=True, type=_pattern(
        ACCELERATOR_TYPE, "accelerator type such as v4-8, v5litepod-16, v5p-32 or v6e-8"))
    create.add_argument("--version", help="TPU runtime version (default: the one for the "
                        "accelerator generation, see https://cloud.google.com/tpu/docs/runtimes)")
    capacity = create.add_mutually_exclusive_group()
    capacity.add_argument("--spot", action="store_true", help="spot capacity (cheaper, may be "
                          "preempted at any time)")
    capacity.add_argument("--preemptible", action="store_true", help="preemptible capacity "
                          "(older kind, at most 24 hours)")
    create.set_defaults(commands=create_commands)

    setup = sub.add_parser("setup", parents=[common], help="copy or clone and install the code "
                           "on every worker")
    setup.add_argument("--git-url", help="clone this repository instead of copying the checkout")
    setup.add_argument("--git-ref", default="main", help="branch, tag or commit of --git-url")
    setup.add_argument("--python-version", default="3.12", type=_pattern(
        PYTHON_VERSION, "Python version such as 3.12"))
    setup.set_defaults(commands=setup_commands)

    run = sub.add_parser("run", parents=[common], help="start training on every worker")
    run.add_argument("--config", required=True, help="configs/METHOD.py[:PRESET], relative to "
                     "the repository root")
    run.add_argument("--workdir", required=True, type=_gcs_path, help="gs:// run directory "
                     "(checkpoints, logs, samples)")
    run.add_argument("--data-dir", type=_gcs_path, help="gs:// tfds data directory")
    run.add_argument("main_flags", nargs="*", metavar="-- MAIN_FLAGS",
                     help="more jaxdiff.main flags after --, e.g. --config.train.num_steps=1000")
    run.set_defaults(commands=run_commands)

    logs = sub.add_parser("logs", parents=[common], help="follow one worker's log")
    logs.add_argument("--worker", default=0, type=_non_negative_int)
    logs.add_argument("--lines", default=100, type=_non_negative_int)
    logs.set_defaults(commands=logs_commands)

    status = sub.add_parser("status", parents=[common], help="print the VM's state")
    status.set_defaults(commands=status_commands)
    stop = sub.add_parser("stop", parents=[common], help="stop the run on every worker")
    stop.set_defaults(commands=stop_commands)
    delete = sub.add_parser("delete", parents=[common], help="delete the TPU VM")
    delete.set_defaults(commands=delete_commands)
    return parser


def parse_args(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.subcommand == "create" and not (args.version or default_runtime(args.accelerator_type)):
        parser.error(f"no default runtime is known for {args.accelerator_type}; pass --version.")
    if args.subcommand == "setup" and args.git_ref != "main" and not args.git_url:
        parser.error("--git-ref needs --git-url.")
    if args.subcommand == "run":
        for flag in args.main_flags:
            if flag == "--dry-run":
                parser.error("put --dry-run before --; every flag after -- goes to jaxdiff.main.")
            if not flag.startswith("--"):
                parser.error(f"{flag!r} after -- is not a flag; pass flags such as "
                             "--config.train.num_steps=1000.")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for command in args.commands(args):
        if args.dry_run:
            print(shlex.join(command))
            continue
        status = subprocess.run(command, check=False).returncode
        if status != 0:
            sys.exit(f"tpu_vm.py: command failed with exit status {status}: {shlex.join(command)}")


if __name__ == "__main__":
    main()
