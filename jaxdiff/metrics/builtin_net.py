"""A feature network for the built-in datasets, fitted once and shipped with the package, so
that every default run and CI can state sample quality on a CPU in seconds.

    uint8 images (N, H, W, 3), any size -> bilinear resize to 32x32, x / 127.5 - 1
      -> three 3x3 conv + ReLU layers (32, 64 stride 2, 128 stride 2) -> global mean
      -> dense 128 + ReLU: the features (FD: the FID formula in these features)
      -> dense 21: logits over the ten digits, "face", and the ten photographs.

It was fitted (`python -m jaxdiff.metrics.builtin_net`, about a minute) to classify every
built-in image (digits and faces read at 8, 16, 32 and 64 px and shifted by up to 1/8 of the
side, random crops of the photos), so its features see stroke shape, blur and noise. The file's
SHA-256 is pinned; `digit_accuracy` reads the digit head to score class-conditional digits.
"""

import functools
import hashlib
import os
import sys

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.metrics import features as features_lib

SIDE = 32
FEATURES = 128
DIGITS, FACE, PHOTOS = 10, 1, 10
WEIGHTS = os.path.join(os.path.dirname(__file__), "assets", "builtin_features.msgpack")
WEIGHTS_SHA256 = "13661fb1bfae77e4b193a76cd75b0480e3c9c645c8dcf1dc360d370f1974c555"


class BuiltinFeatureNet(nn.Module):
    """uint8 images -> {"features": (N, 128), "logits": (N, 21)}."""

    @nn.compact
    def __call__(self, images):
        x = images.astype(jnp.float32)
        if x.shape[1:3] != (SIDE, SIDE):
            x = jax.image.resize(x, (x.shape[0], SIDE, SIDE, x.shape[3]), "linear")
        x = x / 127.5 - 1.0
        for features, stride in ((32, 1), (64, 2), (128, 2)):
            x = nn.relu(nn.Conv(features, (3, 3), strides=stride)(x))
        feature = nn.relu(nn.Dense(FEATURES)(jnp.mean(x, axis=(1, 2))))
        return {"features": feature, "logits": nn.Dense(DIGITS + FACE + PHOTOS)(feature)}


@functools.cache
def load_params():
    with open(WEIGHTS, "rb") as file:
        data = file.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise ValueError(f"{WEIGHTS} has SHA-256 {digest}, not the pinned {WEIGHTS_SHA256}: "
                         "reinstall jaxdiff.")
    return flax.serialization.msgpack_restore(data)


def builtin_network() -> features_lib.FeatureNetwork:
    net = BuiltinFeatureNet()
    return features_lib.FeatureNetwork(
        "jaxdiff-builtin-v1", lambda params, images: net.apply({"params": params}, images),
        load_params(), has_logits=True, dimension=FEATURES)


def digit_accuracy(logits, labels) -> float:
    """Share of images whose most likely digit (of the ten digit logits) is `labels`."""
    return float(np.mean(np.argmax(np.asarray(logits)[:, :DIGITS], axis=1)
                         == np.asarray(labels)))


# ---- the one-time fit -------------------------------------------------------------------

def training_images(rng: np.random.Generator, count: int):
    """`count` (image, label) pairs at SIDE px: digits and faces at a random read side, shifted;
    photo crops of random size."""
    from jaxdiff.data.builtin import open_builtin
    from jaxdiff.data.images import crop_resize_flip

    sources = [(open_builtin(name)[0], offset) for name, offset in
               (("digits", 0), ("faces", DIGITS), ("photos", DIGITS + FACE))]
    images, labels = [], []
    for _ in range(count):
        records, offset = sources[rng.choice(3, p=[0.6, 0.2, 0.2])]
        record = records[int(rng.integers(len(records)))]
        photo = offset == DIGITS + FACE
        side = SIDE if photo else int(rng.choice([8, 16, 32, 64]))
        image = crop_resize_flip(record["image"], resolution=side,
                                 crop="random" if photo else "center",
                                 scale=(0.2, 1.0) if photo else (1.0, 1.0), allow_upscale=True,
                                 flip=photo, rng=rng)
        image = np.asarray(jax.image.resize(image.astype(np.float32), (SIDE, SIDE, 3),
                                            "linear"))
        shift = rng.integers(-SIDE // 8, SIDE // 8 + 1, size=2) * (not photo)
        images.append(np.roll(np.rint(image).astype(np.uint8), tuple(shift), axis=(0, 1)))
        labels.append(offset + (0 if offset == DIGITS else record["label"]))
    return np.stack(images), np.array(labels)


def fit(steps: int = 3000, batch_size: int = 128, seed: int = 0) -> dict:
    """Adam, cross-entropy on fresh augmented batches; returns the parameters."""
    import optax

    rng = np.random.default_rng(seed)
    net, tx = BuiltinFeatureNet(), optax.adam(1e-3)
    images, labels = training_images(rng, 20000)
    params = net.init(jax.random.PRNGKey(seed), images[:1])["params"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss(p):
            logits = net.apply({"params": p}, x)["logits"]
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, value

    for index in range(steps):
        rows = rng.integers(len(images), size=batch_size)
        params, opt_state, value = step(params, opt_state, images[rows], labels[rows])
        if index % 500 == 0:
            print(f"step {index}: loss {float(value):.4f}")
    held_out, held_labels = training_images(np.random.default_rng(seed + 1), 2000)
    predicted = np.argmax(net.apply({"params": params}, held_out)["logits"], axis=1)
    print(f"held-out accuracy {np.mean(predicted == held_labels):.4f}")
    return jax.tree.map(np.asarray, params)


if __name__ == "__main__":
    params = fit()
    data = flax.serialization.msgpack_serialize(params)
    with open(sys.argv[1] if len(sys.argv) > 1 else WEIGHTS, "wb") as file:
        file.write(data)
    print(f"SHA-256 {hashlib.sha256(data).hexdigest()}")
