"""`--mode=eval`: score the EMA parameters of the latest checkpoint (or of every one) with the
configured sampler, or score a folder / .npz of images, against the reference statistics of
config.data (metrics/evaluate.py). The sampler, its steps and guidance are the method's fields,
set from the command line like any field: --config.method.sampler=heun
--config.method.sample_steps=20 --config.method.guidance_scale=2.

Results go to the log, to <workdir>/eval/metrics.jsonl, and are returned.
"""

from typing import Optional

from jaxdiff.methods.base import Method
from jaxdiff.metrics import evaluate
from jaxdiff.train import loop

WHICH = ("latest", "all")


def evaluate_checkpoints(config, workdir: str, method: Method, run: loop.Setup,
                         which: str = "latest", data_sources: tuple = (None, None)) -> list:
    """[{"step", **results}] of the latest or of every checkpoint in the workdir."""
    if which not in WHICH:
        raise ValueError(f"--checkpoints must be one of {list(WHICH)}, got {which!r}.")
    evaluator = evaluate.Evaluator(config, loop.with_reference_images(config, method,
                                                                      *data_sources), run.mesh)
    results = []
    for step, ema_params in loop.checkpoint_ema_params(workdir, run, which):
        results.append({"step": step, **evaluator.evaluate(ema_params)})
        evaluate.record(workdir, step, results[-1])
    return results


def score_images(config, workdir: str, path: str, run: Optional[loop.Setup] = None) -> dict:
    """The scores of the images in `path` (a folder or .npz), recorded with step -1."""
    images = evaluate.read_images(path)
    results = evaluate.Scorer(config, run.mesh if run else None).score(images)
    evaluate.record(workdir, -1, {"images": path, **results})
    return results
