"""What the pipeline needs to know about a dataset, and the record format every source yields."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Facts about a dataset, known before any image is decoded.

    Records of every source are dicts {"image": encoded bytes or an (H, W[, C]) array,
    "label": int, "name": str (a file path or dataset[index], for error reports)}, and may also
    carry:
      "caption": str, UTF-8 bytes, or a tuple of those (several captions of the image); absent
        or empty when the image has none (`jaxdiff.data.captions` decodes and checks them);
      "embeddings" + "mask": a caption's precomputed text-encoder output, float16 or float32
        (L, D) and bool (L,), or (K, L, D) and (K, L) for K captions.

    Attributes:
      name: the data config name, e.g. "builtin:digits".
      num_examples: records in the split (one epoch, before per-process sharding).
      class_names: class names; empty for an unlabeled dataset, whose labels are all 0, which is
        also the "no class" value `num_classes` of classifier-free guidance.
      min_side: the smallest short side over the images, or None where it is unknown.
      has_captions: records carry captions (some records may still lack one).
      has_embeddings: records carry precomputed "embeddings" and "mask".
      default_crop, default_flip, default_allow_upscale, default_read_threads, default_cache:
        what the data config's None means for crop, flip, allow_upscale, read_threads and cache.
    """

    name: str
    num_examples: int
    class_names: tuple
    min_side: int | None
    has_captions: bool = False
    has_embeddings: bool = False
    default_crop: str = "center"
    default_flip: bool = True
    default_allow_upscale: bool = False
    default_read_threads: int = 4
    default_cache: bool = False

    @property
    def num_classes(self):
        return len(self.class_names)
