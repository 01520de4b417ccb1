"""The token mask of the text context in every network (conditioning.TextContext): padding tokens
(mask False) change no output, real tokens do, and a bad mask fails with one sentence.

Each tiny network gets random parameters everywhere (the zero-initialised layers would hide the
context) from its abstract parameter tree, so nothing but the forward passes is compiled: one for
4 real tokens, one for those 4 followed by 3 padding tokens.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_layers import fast_jit

from jaxdiff.models import dual_unet, unet
from jaxdiff.models import nested_unet as N
from jaxdiff.models import uvit as U
from jaxdiff.models.conditioning import TextContext

KEY = jax.random.key(0)
REAL, PADDING, FEATURES = 4, 3, 12
NETWORKS = {
    "unet": (unet.create(**unet.PRESETS["tiny"], use_context=True), (16,)),
    "uvit": (U.create(**U.PRESETS["tiny"], use_context=True), (16,)),
    # The core, where the context enters (outer levels pass it on untouched).
    "nested_unet": (N.create(**N.PRESETS["tiny"], use_context=True, context_features=16),
                    N.PRESET_RESOLUTIONS["tiny"]),
    "dual_unet": (dual_unet.create(**dual_unet.PRESETS["tiny"], use_context=True), (16,)),
}
_keys = jax.random.split(jax.random.key(1), 4)
T = jnp.array([0.3, 0.7])
EMBEDDINGS = jax.random.normal(_keys[0], (2, REAL, FEATURES))
JUNK = 3.0 * jax.random.normal(_keys[1], (2, PADDING, FEATURES))
# Row 0: its 4 tokens are real; row 1: only its first 2 are.
MASK = jnp.array([[True] * REAL + [False] * PADDING,
                  [True] * 2 + [False] * (REAL + PADDING - 2)])


def network_inputs(name):
    """(model, images, jitted forward(params, images, context) -> flat list of outputs)."""
    model, sides = NETWORKS[name]
    images = [jax.random.normal(jax.random.fold_in(_keys[2], side), (2, side, side, 3))
              for side in sides]
    images = images if name == "nested_unet" else images[0]
    forward = fast_jit(lambda params, images, context: jax.tree.leaves(
        model.apply({"params": params}, images, T, context=context)))
    return model, images, forward


def random_params(model, images, scale=0.1):
    """The model's parameter tree (from jax.eval_shape, nothing compiled), filled with
    N(0, scale^2) values."""
    shapes = jax.eval_shape(lambda: model.init(KEY, images, T, context=EMBEDDINGS))["params"]
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: scale * rng.standard_normal(s.shape, np.float32),
                        nn.unbox(shapes))


def max_row_difference(a, b, row):
    """max |a - b| over every output of the network, in batch row `row`."""
    return max(float(np.max(np.abs(x[row] - y[row]))) for x, y in zip(a, b))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_padding_tokens_change_nothing_and_real_tokens_do(name):
    model, images, forward = network_inputs(name)
    params = random_params(model, images)
    plain = forward(params, images, EMBEDDINGS)
    padded = jnp.concatenate([EMBEDDINGS, JUNK], axis=1)
    masked = forward(params, images, TextContext(padded, MASK))
    # Appending padding tokens leaves row 0 (all of whose 4 tokens are real) unchanged.
    assert max_row_difference(masked, plain, 0) <= 1e-5
    # New values in masked-out positions (row 0: token 5, row 1: token 2) change nothing.
    other_junk = padded.at[0, 5].add(5.0).at[1, 2].add(5.0)
    same = forward(params, images, TextContext(other_junk, MASK))
    assert max(max_row_difference(same, masked, row) for row in (0, 1)) <= 1e-5
    # A real token of row 1 does change row 1 (and only row 1).
    changed = forward(params, images, TextContext(padded.at[1, 1].add(3.0), MASK))
    assert max_row_difference(changed, masked, 1) > 1e-3
    assert max_row_difference(changed, masked, 0) <= 1e-5
    # A row without any real token gets a finite output that no embedding changes.
    empty = MASK.at[1].set(False)
    nothing = forward(params, images, TextContext(padded, empty))
    assert all(np.all(np.isfinite(x)) for x in nothing)
    assert max_row_difference(forward(params, images, TextContext(other_junk, empty)),
                              nothing, 1) <= 1e-5


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_a_bad_mask_shape_fails_with_one_sentence(name):
    # Raised where the network reads its context, before any parameter is made.
    model, images, _ = network_inputs(name)
    context = TextContext(EMBEDDINGS, jnp.ones((2, REAL + 1), bool))
    with pytest.raises(ValueError) as error:
        model.init(KEY, images, T, context=context)
    assert str(error.value) == ("The context mask must have shape (B, L) = (2, 4) like its "
                                "embeddings, got (2, 5).")


def test_masks_add_no_parameters():
    model, sides = NETWORKS["nested_unet"]
    plain = N.count_parameters(model, sides, (REAL, FEATURES))
    assert N.count_parameters(model, sides, (REAL, FEATURES), context_mask=True) == plain
    context = N.abstract_inputs(model, sides, 2, (REAL, FEATURES), context_mask=True)[2]["context"]
    assert context.mask.shape == (2, REAL) and context.mask.dtype == jnp.bool_
    model = NETWORKS["unet"][0]
    abstract = TextContext(jax.ShapeDtypeStruct((1, REAL, FEATURES), jnp.float32),
                           jax.ShapeDtypeStruct((1, REAL), jnp.bool_))
    assert unet.count_parameters(model, (1, 16, 16, 3), context=abstract) == (
        unet.count_parameters(model, (1, 16, 16, 3), context=abstract.embeddings))
