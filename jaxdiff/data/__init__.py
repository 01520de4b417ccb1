"""Input pipeline: built-in offline datasets, image folders and tfds datasets through grain.

Public API:
  default_data_config()                       the data ConfigDict with documented defaults
  validate_data_config(config, *, global_batch_size, process_count=1)
                                              fail-early checks -> (records, DatasetSpec, options)
  create_iterator(config, *, global_batch_size, seed, process_index=0, process_count=1,
                  mix_config=None, validated=None, mix_validated=None)
                                              grain iterator of {"image": uint8, "label": int32}
  check_mix_config(config, mix_config)        the mixing stream fits the first
  read_reference_images(config, num_images, *, seed, mix_config=None)
                                              a few training images, alike on every process
  to_model_input(images, dtype=jnp.float32)   uint8 -> [-1, 1] on device
  prepare_image_folder(root, data_dir=None)   convert a folder to ArrayRecord (process 0 first)
"""

from jaxdiff.data.config import default_data_config, validate_data_config
from jaxdiff.data.folder import prepare_image_folder
from jaxdiff.data.pipeline import (check_mix_config, create_iterator, read_reference_images,
                                   to_model_input)
from jaxdiff.data.specs import DatasetSpec

__all__ = [
    "DatasetSpec",
    "check_mix_config",
    "create_iterator",
    "default_data_config",
    "prepare_image_folder",
    "read_reference_images",
    "to_model_input",
    "validate_data_config",
]
