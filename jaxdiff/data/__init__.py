"""Input pipeline: built-in offline datasets, image folders, tfds datasets and ArrayRecord caption
shards through grain.

Public API:
  default_data_config()                       the data ConfigDict with documented defaults
  validate_data_config(config, *, global_batch_size, process_count=1)
                                              fail-early checks -> (records, DatasetSpec, options)
  check_text_data(spec, text)                 fails in one sentence when `text` (None, a
                                              Tokenizer or "embeddings") wants captions or
                                              embeddings the dataset lacks
  create_iterator(config, *, global_batch_size, seed, process_index=0, process_count=1,
                  mix_config=None, validated=None, mix_validated=None, text=None)
                                              grain iterator of {"image": uint8, "label": int32}
                                              [+ "tokens" int32 + "mask" bool with a Tokenizer,
                                              + "embeddings" float32 + "mask" with "embeddings"]
  check_mix_config(config, mix_config)        the mixing stream fits the first
  read_reference_images(config, num_images, *, seed, mix_config=None)
                                              a few training images, alike on every process
  to_model_input(images, dtype=jnp.float32)   uint8 -> [-1, 1] on device
  prepare_image_folder(root, data_dir=None)   convert a folder to ArrayRecord (process 0 first)
  encode_record(dict) / decode_record(bytes)  the record codec of the "shards:" ArrayRecord files

Converting webdataset tar shards (img2dataset) to "shards:" ArrayRecord files is a command,
`python -m jaxdiff.data.shards convert --input=... --output=...` (jaxdiff.data.shards).
"""

from jaxdiff.data.captions import check_text_data
from jaxdiff.data.config import default_data_config, validate_data_config
from jaxdiff.data.folder import prepare_image_folder
from jaxdiff.data.pipeline import (check_mix_config, create_iterator, read_reference_images,
                                   to_model_input)
from jaxdiff.data.records import decode_record, encode_record
from jaxdiff.data.specs import DatasetSpec

__all__ = [
    "DatasetSpec",
    "check_mix_config",
    "check_text_data",
    "create_iterator",
    "decode_record",
    "default_data_config",
    "encode_record",
    "prepare_image_folder",
    "read_reference_images",
    "to_model_input",
    "validate_data_config",
]
