"""Know it fits before renting the pod: the real train step of a config compiled for a TPU
slice or a GPU mesh on a CPU, with per-chip memory, FLOPs and the largest batch.

    python -m jaxdiff.plan --config=configs/mdm.py:cc12m1024 --target=tpu:v5p:2x2x2
        [--per_chip_batch=B] [--grad_accum=A] [--find_batch [--batch_tolerance=0.1]]
        [--utilisation=0.4] [--noplan_sampler] [--plan_output=plan.json]
        [--config.model.remat=full ...]
    python -m jaxdiff.main --mode=plan ...            (the same flags)

Needs `pip install 'jaxdiff[plan]'` (libtpu for TPU targets, the CUDA PJRT plugin for GPU
targets; `jaxdiff[plan-cudnn]` adds cuDNN so GPU plans can use its fused attention).

    targets.py   target names -> abstract devices (libtpu topologies, CUDA target descriptions)
    flops.py     matmul / convolution FLOPs on the jaxpr, loop bodies counted per iteration
    compile.py   the train step and sampler as `train` builds them, compiled; memory and FLOPs
    planner.py   per-chip batch, find_batch, step-time estimate
    report.py    the printed report and its JSON record
    cli.py       flags
"""
