"""Tests of jaxdiff/plan/flops.py: FLOP counts of known layers against their hand counts."""

import jax
import jax.numpy as jnp
import pytest

from jaxdiff.plan.flops import count_flops

B, H, W, CIN, COUT = 2, 8, 8, 3, 5
CONV_FLOPS = 2 * B * H * W * 3 * 3 * CIN * COUT  # one multiply-add per output and kernel tap


def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


X = jax.ShapeDtypeStruct((B, H, W, CIN), jnp.float32)
K = jax.ShapeDtypeStruct((3, 3, CIN, COUT), jnp.float32)


def test_a_convolution_and_its_gradient():
    assert count_flops(conv, X, K).flops == CONV_FLOPS
    # The backward pass is two convolutions of the same size: input and kernel gradients.
    grads = jax.grad(lambda x, w: conv(x, w).sum(), argnums=(0, 1))
    assert count_flops(grads, X, K).flops == 3 * CONV_FLOPS


@pytest.mark.parametrize("length", [1, 7])
def test_a_scanned_dense_layer_counts_every_iteration(length):
    def stack(x, w):
        return jax.lax.scan(lambda h, _: (jnp.tanh(h @ w), None), x, None, length=length)[0]

    count = count_flops(stack, jax.ShapeDtypeStruct((4, 16), jnp.float32),
                       jax.ShapeDtypeStruct((16, 16), jnp.float32))
    assert count.flops == length * 2 * 4 * 16 * 16
    assert count.flops_bodies_once == 2 * 4 * 16 * 16


def test_remat_counts_the_recomputation_and_cond_its_costliest_branch():
    dense = jax.ShapeDtypeStruct((4, 16), jnp.float32), jax.ShapeDtypeStruct((16, 32), jnp.float32)
    forward = 2 * 4 * 16 * 32

    def loss(x, w):
        return jnp.sum(jnp.tanh(x @ w))

    assert count_flops(jax.grad(loss, argnums=1), *dense).flops == 2 * forward
    assert count_flops(jax.grad(jax.checkpoint(loss), argnums=1), *dense).flops == 3 * forward

    def branches(p, x, w):
        return jax.lax.cond(p, lambda: (x @ w) @ w.T, lambda: x)

    count = count_flops(branches, jax.ShapeDtypeStruct((), bool), *dense)
    assert count.flops == 2 * forward


def test_a_while_loop_is_counted_once_and_reported():
    def loop(x, w):
        return jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] @ w, c[1] + 1), (x, 0))[0]

    count = count_flops(loop, jax.ShapeDtypeStruct((4, 16), jnp.float32),
                        jax.ShapeDtypeStruct((16, 16), jnp.float32))
    assert count.flops == 2 * 4 * 16 * 16 and count.counted_once == 1
