"""Training in stages within one run: MDM's progressive training (Gu et al. 2023, sec. 3.3).

`config.stages` is a list of overrides, one per stage, applied in order over the config (nested
dicts merge), each with its own `num_steps`. Stage k trains in `<workdir>/stage_<k>` and, unless
the config already names one, starts from the parameters of stage k - 1 (`init_from`). Because a
stage resumes from its own checkpoints first, running the same command again after a
preemption skips finished stages (their last checkpoint is at their num_steps) and continues the
interrupted one. With no stages the run is a single stage in the workdir itself.

Example (a 64 px core, then 64 -> 256 on the same NestedUNet):
    stages = [dict(num_steps=200_000, method=dict(active_levels=1), data=dict(resolution=64)),
              dict(num_steps=300_000, method=dict(active_levels=2), data=dict(resolution=256))]
"""

import copy
import os

import ml_collections

from jaxdiff.train.defaults import merge


def stage_runs(config, workdir: str) -> list[tuple[ml_collections.ConfigDict, str]]:
    """(config, workdir) of every stage, in training order."""
    stages = list(config.get("stages") or [])
    if not stages:
        return [(config, workdir)]
    runs = []
    for index, overrides in enumerate(stages):
        overrides = dict(overrides.to_dict() if hasattr(overrides, "to_dict") else overrides)
        if "num_steps" not in overrides:
            raise ValueError(f"Stage {index} of config.stages must set num_steps.")
        stage = copy.deepcopy(config)
        stage.unlock()
        stage.stages = []
        merge(stage, overrides)
        if index > 0 and "init_from" not in overrides:
            stage.init_from = runs[-1][1]
        runs.append((stage, os.path.join(workdir, f"stage_{index}")))
    return runs
