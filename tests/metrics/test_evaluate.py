"""Evaluation in the train loop and in --mode=eval: scores of the EMA samples logged, written to
TensorBoard and eval/metrics.jsonl at eval.every steps; --mode=eval over every checkpoint and
over a .npz of images; bad config.eval values and missing weights as one sentence before
anything compiles."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import train_toy as toy
from test_features import digits

from configs import ddpm  # the repository root is on sys.path (tests/conftest.py)
from jaxdiff import main
from jaxdiff.data import default_data_config
from jaxdiff.data.builtin import open_builtin
from jaxdiff.metrics import builtin_net, evaluate
from jaxdiff.train import defaults, prepare

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# the toy method of tests/train (a one-call sampler) on 8 px digits: 4 steps, evaluated every 2
TINY = {"num_steps": 4, "eval.every": 2, "eval.num_samples": 16, "eval.batch_size": 8}
TOY_CONFIG = os.path.join(os.path.dirname(os.path.abspath(toy.__file__)), "train_toy_config.py")


def run_cli(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    return subprocess.run([sys.executable, "-m", "jaxdiff.main", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def lines(path):
    return [json.loads(line) for line in open(path)]


def test_the_loop_and_eval_mode_score_samples_checkpoints_and_images(tmp_path):
    workdir = str(tmp_path / "run")
    result = run_cli(f"--config={TOY_CONFIG}", f"--workdir={workdir}",
                     *(f"--config.{k}={v}" for k, v in TINY.items()))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eval step 4 (16 samples): fd_builtin" in result.stderr
    metrics = os.path.join(workdir, "eval", "metrics.jsonl")
    logged = lines(metrics)
    assert [entry["step"] for entry in logged] == [2, 4]
    assert {"fd_builtin", "precision", "recall", "sampler_images_per_s", "eval_seconds",
            "num_samples"} <= set(logged[-1])
    assert logged[-1]["fd_builtin"] > 0 and logged[-1]["sampler_images_per_s"] > 0

    # eval mode, in this process (main.run after prepare, as the command does)
    stages = prepare.prepare(toy.toy_config(**TINY), workdir, "eval")
    again = main.run(stages, "eval", checkpoints="all")
    assert [entry["step"] for entry in again] == [2, 4]
    assert [entry["step"] for entry in lines(metrics)[2:]] == [2, 4]
    # the same seed and parameters: the same samples, the same score as in training
    assert again[1]["fd_builtin"] == pytest.approx(logged[1]["fd_builtin"], rel=1e-4)

    real, blank = tmp_path / "real.npz", tmp_path / "blank.npz"
    np.savez(real, images=digits(toy.RESOLUTION)[:400])
    np.savez(blank, arr_0=np.zeros((400, toy.RESOLUTION, toy.RESOLUTION, 3), np.uint8))
    scores = [main.run(stages, "eval", images=str(path)) for path in (real, blank)]
    assert lines(metrics)[-2]["images"] == str(real) and lines(metrics)[-1]["step"] == -1
    # 400 real digits against all 1797 (the sample-size bias of FD: about 10), blank images
    assert scores[0]["fd_builtin"] < 20 and scores[1]["fd_builtin"] > 20 * scores[0]["fd_builtin"]
    assert scores[0]["precision"] > 0.8 and scores[1]["precision"] == 0


def test_class_conditional_digits_are_scored_by_the_digit_they_were_sampled_for():
    config = ddpm.get_config(None)
    scorer = evaluate.Scorer(config, None)
    records, _ = open_builtin("digits")
    labels = np.array([records[i]["label"] for i in range(len(records))])
    images = digits(config.data.resolution)
    assert scorer.score(images[:500], labels[:500])["digit_accuracy"] > 0.9
    assert scorer.score(images[:500], (labels[:500] + 1) % 10)["digit_accuracy"] < 0.1


def eval_config(**overrides):
    config = defaults.train_config().eval
    config.update(overrides)
    return config


@pytest.mark.parametrize("overrides, sentence", [
    (dict(metric="lpips"), "config.eval.metric must be one of ['auto', 'builtin', 'inception']"),
    (dict(preprocessing="clip"), "config.eval.preprocessing must be one of"),
    (dict(num_samples=1), "config.eval.num_samples must be an integer at least 2"),
    (dict(every=-5), "config.eval.every must be an integer at least 0"),
    (dict(batch_size=0), "config.eval.batch_size must be an integer at least 1"),
    (dict(reference="/nonexistent/ref.npz"), "config.eval.reference /nonexistent/ref.npz does "
                                             "not exist"),
    (dict(metric="inception", inception_weights="/nonexistent/w.msgpack"),
     "No Inception weights at /nonexistent/w.msgpack"),
])
def test_bad_eval_values_are_one_sentence(overrides, sentence):
    with pytest.raises(ValueError, match=sentence.replace("[", r"\[").replace("]", r"\]")):
        evaluate.check_eval_config(eval_config(**overrides), default_data_config())


def test_eval_mode_without_weights_fails_before_compiling(tmp_path):
    config = ddpm.get_config(None)
    config.data.name = "tfds:cifar10"
    with pytest.raises(ValueError, match="No Inception weights at"):
        prepare.prepare(config, str(tmp_path), "eval")
    # training without evaluation does not need them
    config.eval.every = 0
    evaluate.check_eval_config(config.eval, config.data, needs_weights=False)


def test_the_shipped_network_file_is_hash_checked(tmp_path, monkeypatch):
    data = bytearray(open(builtin_net.WEIGHTS, "rb").read())
    data[-1] ^= 1
    tampered = tmp_path / "builtin_features.msgpack"
    tampered.write_bytes(bytes(data))
    monkeypatch.setattr(builtin_net, "WEIGHTS", str(tampered))
    builtin_net.load_params.cache_clear()
    try:
        with pytest.raises(ValueError, match="not the pinned .*: reinstall jaxdiff"):
            builtin_net.load_params()
    finally:
        builtin_net.load_params.cache_clear()
