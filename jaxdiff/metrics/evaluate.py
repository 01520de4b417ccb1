"""Scoring a model by its samples: in the train loop every `eval.every` steps and in
`--mode=eval` (a checkpoint, every checkpoint, or a folder / .npz of images).

Config fields (`config.eval`):
    every               steps between evaluations in training (0: none)
    num_samples         samples drawn from the EMA parameters per evaluation (FID-50K: 50000)
    batch_size          samples per sampler call and per feature batch (feature batches are
                        rounded up to a multiple of the device count)
    metric              "builtin" (the shipped network of metrics/builtin_net.py, for the
                        built-in datasets), "inception" (FID, IS, precision/recall), or "auto":
                        builtin for builtin:* data, else inception
    inception_weights   the weights file ("" = the cache's, see metrics/inception_weights.py)
    preprocessing       the Inception's resize and input range: "tf" (the 2015 graph as the ADM
                        evaluator feeds it) or "pytorch_fid"
    reference           a reference .npz ("" = statistics of config.data, cached)
    reference_images    images of config.data in the reference (at most the dataset's size)
    precision_recall    also precision and recall (k = 3)
    seed                the sampling seed (the same samples at every evaluation)

Results: {"fid" (inception) or "fd_builtin", "inception_score" and "inception_score_std" when
the weights have logits, "precision", "recall", "digit_accuracy" (class-conditional built-in
digits), "sampler_images_per_s", "num_samples", "eval_seconds" (the whole evaluation; the first
one also counts loading the network and the reference statistics)}.

A text-to-image model is sampled from eval.batch_size captions of config.data (the first
usable caption of training images drawn with eval.seed; data.captions.reference_captions), the
same captions in every sampler call, so that the samples follow the data's captions and their
distance to the data's statistics means what FID on COCO captions does.
"""

import json
import os
import time

import jax
import numpy as np
from absl import logging
from etils import epath
from PIL import Image

from jaxdiff import checks
from jaxdiff.data.captions import reference_captions
from jaxdiff.data.sources import open_dataset
from jaxdiff.metrics import frechet, reference
from jaxdiff.metrics.features import Extractor, inception_network
from jaxdiff.metrics.inception import PREPROCESSING
from jaxdiff.train import images as images_lib
from jaxdiff.train import sampling

METRICS = ("auto", "builtin", "inception")


def eval_defaults() -> dict:
    return dict(every=0, num_samples=1024, batch_size=128, metric="auto", inception_weights="",
                preprocessing="tf", reference="", reference_images=50_000,
                precision_recall=True, seed=2)


def resolved_metric(eval_config, data_config) -> str:
    if eval_config.metric != "auto":
        return eval_config.metric
    return "builtin" if data_config.name.startswith("builtin:") else "inception"


def check_eval_config(eval_config, data_config, needs_weights: bool = True) -> None:
    """One sentence for a bad config.eval field, before anything compiles: the fields, the
    reference file and, for the Inception metric when the run evaluates (`needs_weights`), the
    weights file (its hash is checked when the evaluator loads it, also before anything
    compiles)."""
    checks.one_of(*METRICS)("config.eval.metric", eval_config.metric)
    checks.one_of(*sorted(PREPROCESSING))("config.eval.preprocessing",
                                          eval_config.preprocessing)
    for name in ("every", "reference_images"):
        checks.number_in(0, integer=True)(f"config.eval.{name}", eval_config[name])
    checks.number_in(2, integer=True)("config.eval.num_samples", eval_config.num_samples)
    checks.boolean("config.eval.precision_recall", eval_config.precision_recall)
    checks.number_in(1, integer=True)("config.eval.batch_size", eval_config.batch_size)
    if eval_config.reference and not os.path.isfile(eval_config.reference):
        raise ValueError(f"config.eval.reference {eval_config.reference} does not exist.")
    if needs_weights and resolved_metric(eval_config, data_config) == "inception":
        from jaxdiff.metrics.inception_weights import missing_weights_sentence
        missing = missing_weights_sentence(eval_config.inception_weights)
        if missing:
            raise ValueError(missing)


def feature_network(eval_config, data_config):
    if resolved_metric(eval_config, data_config) == "builtin":
        from jaxdiff.metrics.builtin_net import builtin_network
        return builtin_network()
    from jaxdiff.metrics.inception_weights import load_weights
    return inception_network(load_weights(eval_config.inception_weights),
                             eval_config.preprocessing)


class Scorer:
    """Scores uint8 images against the reference statistics of the run's data."""

    def __init__(self, config, mesh):
        eval_config = config.eval
        self.network = feature_network(eval_config, config.data)
        self.extractor = Extractor(self.network, eval_config.batch_size, mesh)
        self.reference = reference.reference_statistics(eval_config, config.data, config.seed,
                                                        self.extractor)
        self.distance = ("fd_builtin" if resolved_metric(eval_config, config.data) == "builtin"
                         else "fid")
        self.precision_recall = eval_config.precision_recall
        self.digits = config.data.name == "builtin:digits"

    def score(self, images: np.ndarray, labels=None) -> dict:
        out = self.extractor.features(images)
        stats = frechet.statistics(out["features"])
        results = {self.distance: frechet.frechet_distance(stats, self.reference),
                   "num_samples": len(images)}
        if self.network.name.startswith("inception") and "logits" in out:
            results["inception_score"], results["inception_score_std"] = (
                frechet.inception_score(out["logits"]))
        if self.precision_recall and self.reference.features is not None:
            results["precision"], results["recall"] = frechet.precision_recall(
                self.reference.features, out["features"][:reference.KEPT_FEATURES])
        if self.digits and labels is not None and "logits" in out:
            from jaxdiff.metrics.builtin_net import digit_accuracy
            results["digit_accuracy"] = digit_accuracy(out["logits"], labels)
        return results


class Evaluator:
    """Samples eval.num_samples images from EMA parameters (the same seed every time) and
    scores them, with the sampler's images/s. `sampler`: an already compiled
    sampling.make_sampler(method, mesh, eval.batch_size) to reuse (the sample grids'; not for
    a text-to-image model, which the evaluator samples from the data's captions)."""

    def __init__(self, config, method, mesh, sampler=None):
        start = time.perf_counter()
        self.config, self.scorer = config.eval, Scorer(config, mesh)
        batch_size = config.eval.batch_size
        prompts = None
        if method.text is not None:
            records, _ = open_dataset(config.data.name, config.data.data_dir,
                                      config.data.split, config.data.caption_field)
            prompts = reference_captions(records, batch_size, config.eval.seed)
            if not prompts:
                raise ValueError(f"{config.data.name} has no usable caption to sample the "
                                 "text-to-image evaluation from.")
        self.sampler = sampler or sampling.make_sampler(
            method, mesh, batch_size, sampling.sampler_inputs(config, method, batch_size,
                                                              prompts))
        self.labels = sampling.sample_labels(method, config.eval.batch_size)
        self.setup_seconds = time.perf_counter() - start  # counted in the first evaluation

    def sample(self, ema_params):
        """(uint8 samples, labels or None, sampler images/s, excluding the first call when
        there are several: it compiles)."""
        config, key = self.config, jax.random.PRNGKey(self.config.seed)
        calls = -(-config.num_samples // config.batch_size)
        images, seconds = [], []
        for index in range(calls):
            start = time.perf_counter()
            batch = sampling.highest_resolution(self.sampler(ema_params,
                                                             jax.random.fold_in(key, index)))
            seconds.append(time.perf_counter() - start)
            images.append(images_lib.to_uint8(batch))
        timed = seconds[1:] or seconds
        labels = (None if self.labels is None
                  else np.tile(self.labels, calls)[:config.num_samples])
        rate = len(timed) * config.batch_size / sum(timed)
        return np.concatenate(images)[:config.num_samples], labels, rate

    def evaluate(self, ema_params) -> dict:
        start = time.perf_counter()
        images, labels, rate = self.sample(ema_params)
        results = {**self.scorer.score(images, labels), "sampler_images_per_s": rate}
        results["eval_seconds"] = time.perf_counter() - start + self.setup_seconds
        self.setup_seconds = 0.0
        return results


def format_results(step, results: dict) -> str:
    parts = [f"{key} {value}" if isinstance(value, str) else f"{key} {value:.4g}"
             for key, value in results.items() if key not in ("num_samples", "step")]
    return f"eval step {step} ({results['num_samples']} samples): " + "  ".join(parts)


def record(workdir, step: int, results: dict, writer=None) -> None:
    """Log line, TensorBoard scalars (eval/<name>) and a line of <workdir>/eval/metrics.jsonl
    (process 0)."""
    if jax.process_index() != 0:
        return
    logging.info(format_results(step, results))
    if writer is not None:
        writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()
                                    if not isinstance(v, str) and k != "step"})
    path = epath.Path(workdir) / "eval" / "metrics.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        file.write(json.dumps({**results, "step": step}) + "\n")


def read_images(path: str) -> np.ndarray:
    """uint8 (N, H, W, 3) from a .npz ("images", as --mode=sample writes, or ADM's "arr_0") or
    a folder of image files (sorted by name)."""
    if path.endswith(".npz"):
        with np.load(path) as stored:
            key = next((k for k in ("images", "arr_0") if k in stored), None)
            if key is None:
                raise ValueError(f"{path} has neither 'images' nor 'arr_0'.")
            return np.asarray(stored[key], np.uint8)
    if not os.path.isdir(path):
        raise ValueError(f"--images {path} is neither a .npz nor a folder.")
    files = sorted(f for f in os.listdir(path)
                   if f.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".bmp")))
    if not files:
        raise ValueError(f"--images folder {path} holds no image files.")
    return np.stack([np.asarray(Image.open(os.path.join(path, f)).convert("RGB"))
                     for f in files])
