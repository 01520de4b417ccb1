"""The method-agnostic training system: mesh and sharding rules (sharding.py), train state,
optimizer and EMA (state.py), the jitted step (step.py), checkpoints (checkpoint.py), the loop
(loop.py), sampling output (sampling.py, images.py), metric writers (metrics.py) and the config
defaults every method config starts from (defaults.py)."""
