"""jaxdiff/main.py, the command-line entry point: workdir naming, distributed detection,
validation before compiling, a short CLI training run with overrides, and sampling from its
checkpoint; the same on captions with prompts; the shard conversion mode."""

import io
import json
import os
import runpy
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import train_toy as toy
from PIL import Image
from tensorboardX.proto import event_pb2

from jaxdiff import main, methods
from jaxdiff.train import prepare

CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(toy.__file__)), "train_toy_config.py")


def run_cli(*args, timeout=120):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=toy.REPO_ROOT,
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    return subprocess.run([sys.executable, "-m", "jaxdiff.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=toy.REPO_ROOT)


def tensorboard_tags(logdir):
    """{"scalar" | "image" | "text": set of tags} in the TensorBoard event files of `logdir`
    (TFRecord framing: u64 length, u32 crc, the Event proto, u32 crc)."""
    tags = {"scalar": set(), "image": set(), "text": set()}
    for path in logdir.iterdir():
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 16 + length
            for value in event.summary.value:
                kind = ("image" if value.HasField("image") else
                        "scalar" if value.HasField("simple_value") else "text")
                tags[kind].add(value.tag)
    return tags


def test_default_workdir_and_cluster_detection():
    assert main.default_workdir("configs/mdm.py:tiny") == os.path.join("runs", "mdm_tiny")
    assert main.default_workdir("configs/mdm.py") == os.path.join("runs", "mdm")
    assert prepare.absolute_workdir("runs/mdm") == os.path.join(os.getcwd(), "runs", "mdm")
    assert prepare.absolute_workdir("gs://bucket/runs/mdm") == "gs://bucket/runs/mdm"
    assert not main.cluster_detected({})
    assert not main.cluster_detected({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"})
    assert main.cluster_detected({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"})
    assert main.cluster_detected({"OMPI_COMM_WORLD_SIZE": "2"})
    assert main.cluster_detected({"TPU_WORKER_HOSTNAMES": "t0,t1"})
    assert not main.cluster_detected({"TPU_WORKER_HOSTNAMES": "t0"})
    assert main.cluster_detected({}, ["/dev/vfio/0"])  # a Cloud TPU VM: metadata-server discovery
    assert main.cluster_detected({}, ["/dev/accel0", "/dev/accel1"])
    with pytest.raises(ValueError, match="must be given together"):
        main.initialize_distributed("127.0.0.1:1234", None, 0)


def test_validation_fails_with_one_sentence():
    with pytest.raises(ValueError, match="Unknown method 'nope'; registered methods: \\[.*'toy'"):
        prepare.prepare(toy.toy_config(**{"method.name": "nope"}), "/tmp/unused", "train")
    with pytest.raises(ValueError, match="multiply to 3, not to the 8 devices"):
        prepare.prepare(toy.toy_config(**{"mesh.data": 3}), "/tmp/unused", "train")
    with pytest.raises(ValueError, match="Unknown mode 'score'"):
        prepare.prepare(toy.toy_config(), "/tmp/unused", "score")
    result = run_cli(f"--config={CONFIG_FILE}", "--config.batch_size=7", "--workdir=/dev/null")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "jaxdiff: batch_size 7 must be a positive multiple of grad_accum_steps x data x fsdp "
        "devices = "
        "1 x 2.")


@pytest.mark.parametrize("name", ["ddpm", "mdm", "simple_diffusion", "attenuation", "cold"])
def test_every_method_field_is_in_the_config_so_the_command_line_can_override_it(name):
    config = runpy.run_path(os.path.join(toy.REPO_ROOT, "configs", f"{name}.py"))["get_config"]()
    assert set(methods.default_settings(name)) <= set(config.method)


def test_a_bad_method_value_from_the_command_line_fails_before_training():
    result = run_cli("--config=configs/ddpm.py", "--config.method.x0_transform=nope",
                     "--workdir=/dev/null")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "jaxdiff: method.x0_transform must be one of ['none', 'clip', 'dynamic'], got 'nope'.")


def test_cli_trains_with_overrides_then_samples(tmp_path):
    workdir = tmp_path / "run"
    result = run_cli(f"--config={CONFIG_FILE}:wide", f"--workdir={workdir}",
                     "--config.num_steps=2", "--config.optimizer.learning_rate=0.003",
                     "--config.sample.every=2")
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["num_steps"] == 2 and saved["optimizer"]["learning_rate"] == 0.003
    assert saved["model"]["features"] == 16  # the preset
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2"]
    grid = np.asarray(Image.open(workdir / "samples" / "step_00000002.png"))
    assert grid.shape == (2 * 9 + 1, 2 * 9 + 1, 3)  # 4 samples of 8 px, 2 x 2, 1 px borders
    tags = tensorboard_tags(workdir / "tensorboard")
    assert {"loss", "grad_norm", "learning_rate", "images_per_s", "steps_per_s"} <= tags["scalar"]
    assert "samples" in tags["image"] and any("parameters" in tag for tag in tags["text"])

    # The same workdir with the narrower model: refused in one sentence naming what differs.
    mismatch = run_cli(f"--config={CONFIG_FILE}", f"--workdir={workdir}", "--config.num_steps=4")
    assert mismatch.returncode == 1 and "Traceback" not in mismatch.stderr
    assert mismatch.stderr.strip().splitlines()[-1].startswith(
        f"jaxdiff: The checkpoint at step 2 in {workdir / 'checkpoints'} does not match this "
        "run: config.model.features: checkpoint 16, run 8;")
    assert json.loads((workdir / "config.json").read_text())["model"]["features"] == 16

    config = toy.toy_config(**{"model.features": 16, "num_steps": 2})
    npz_path = main.run(prepare.prepare(config, str(workdir), "sample"), "sample", num_samples=5)
    with np.load(str(npz_path)) as samples:
        images = samples["images"]
    assert images.shape == (5, 8, 8, 3) and images.dtype == np.uint8
    assert len(np.unique(images)) > 10
    assert os.path.exists(str(npz_path).replace(".npz", ".png"))


def test_cli_trains_on_captions_then_samples_prompts(tmp_path):
    """configs/mdm.py:cpu_text shrunk: the grids carry their prompts (beside the PNG and in
    TensorBoard); --mode=sample takes --prompt, --negative_prompt and --guidance_scale."""
    workdir = tmp_path / "run"
    shrink = ["--config=configs/mdm.py:cpu_text", f"--workdir={workdir}",
              "--config.data.resolution=16", "--config.num_steps=2", "--config.batch_size=4",
              "--config.sample.every=2", "--config.sample.num_samples=4",
              "--config.eval.every=0", "--config.checkpoint.every=2"]
    result = run_cli(*shrink, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    prompts = (workdir / "samples" / "step_00000002.txt").read_text().splitlines()
    assert prompts == ["a red zero", "a green one", "a blue two", "a yellow three"]
    assert any("sample_prompts" in tag for tag in tensorboard_tags(workdir / "tensorboard")["text"])

    sampled = run_cli(*shrink, "--mode=sample", "--prompt=a red seven", "--prompt=a blue one",
                      "--negative_prompt=a green two", "--guidance_scale=2",
                      "--num_samples=4", timeout=300)
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    with np.load(str(workdir / "samples" / "samples_00000002.npz")) as samples:
        assert samples["images"].shape == (4, 16, 16, 3)
        assert list(samples["prompts"]) == ["a red seven", "a blue one"] * 2
    assert (workdir / "samples" / "samples_00000002.txt").read_text().splitlines() == [
        "a red seven", "a blue one"] * 2

    not_text = run_cli(f"--config={CONFIG_FILE}", f"--workdir={tmp_path / 'toy'}",
                       "--mode=sample", "--prompt=a red seven")
    assert not_text.returncode == 1 and "Traceback" not in not_text.stderr
    assert not_text.stderr.strip().splitlines()[-1].startswith("jaxdiff: ")


def test_convert_mode_writes_caption_shards_and_embed_mode_needs_its_output(tmp_path):
    """--mode=convert is the shard conversion as the launch scripts start it on every host."""
    tar_path = tmp_path / "00000.tar"
    with tarfile.open(tar_path, "w") as archive:
        for key, caption in (("a", "a red seven"), ("b", "a blue one")):
            png = io.BytesIO()
            Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(png, format="PNG")
            for name, payload in ((f"{key}.png", png.getvalue()), (f"{key}.txt",
                                                                   caption.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
    output = tmp_path / "shards"
    result = run_cli("--config=configs/mdm.py:cpu_text", "--mode=convert",
                     f"--convert_input={tmp_path}/{{00000..00000}}.tar",
                     f"--convert_output={output}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output / "00000.json").read_text())
    assert summary["examples"] == 2 and (output / "00000.array_record").exists()
    missing = run_cli("--config=configs/mdm.py:cpu_text", "--mode=embed")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1] == (
        "jaxdiff: --mode=embed needs --embed_output.")
