"""Class labels in training and sampling, for classifier-free guidance (Ho & Salimans 2022).

A class-conditional network (num_classes = C > 0) is trained with label dropout: each label is
replaced by the null class C with probability p, so that one network gives both the
conditional and the unconditional prediction (core/guidance.py combines them when sampling).
"""

import jax
import jax.numpy as jnp


def drop_labels(rng, labels, num_classes: int, rate: float):
    """Replace each label by the null class `num_classes` with probability `rate`."""
    dropped = jax.random.bernoulli(rng, rate, jnp.shape(labels))
    return jnp.where(dropped, num_classes, labels).astype(jnp.int32)


def training_labels(rng, batch, num_classes: int, rate: float):
    """The labels a class-conditional network trains on (dropped for guidance), else None."""
    if num_classes == 0:
        return None
    if "label" not in batch:
        raise ValueError("The network is class-conditional (num_classes > 0) but the batch has "
                         "no 'label'.")
    return drop_labels(rng, batch["label"], num_classes, rate)


def sampling_labels(rng, labels, num_samples: int, num_classes: int):
    """Given labels (int32 (num_samples,)), or uniformly drawn classes when labels is None, for
    a class-conditional network; None for an unconditional one (given labels are an error)."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError("Labels were given for sampling an unconditional network.")
        return None
    if labels is None:
        return jax.random.randint(rng, (num_samples,), 0, num_classes, dtype=jnp.int32)
    labels = jnp.asarray(labels, jnp.int32)
    if labels.shape != (num_samples,):
        raise ValueError(f"labels must have shape ({num_samples},), got {labels.shape}.")
    return labels
