"""Caption datasets in webdataset tar shards (as img2dataset writes them) -> ArrayRecord shards.

    python -m jaxdiff.data.shards convert --input='/data/cc12m/{00000..00099}.tar' \\
        --output=/data/cc12m_ar [--process_index=I --process_count=N]

then train on them with data.name = "shards:/data/cc12m_ar" (`jaxdiff.data.shard_source`).

Input: a pattern of local (or mounted) tar files with brace ranges ({00000..00099}, zero padding
as written), brace alternatives ({a,b}) and glob wildcards (* ? [...]); the matched files, sorted,
are the input shards 0, 1, ... A tar's members are grouped by key, the member path up to the
first "." of its file name; a key's KEY.jpg | .jpeg | .png | .webp is its image and KEY.txt its
caption (UTF-8); other members (KEY.json, ...) are ignored.

Processes: process i of N converts the input shards k with k % N == i, so the same command on
every host of a job splits the work. I and N default to jax.process_index() / process_count()
when jax.distributed is initialised (this command initialises it where jaxdiff.main would: a TPU
slice, SLURM or Open MPI with several tasks), else to 0 and 1.

Output, per input shard STEM.tar (one output shard per input shard):

    STEM.array_record   the examples, one record each (`jaxdiff.data.records`:
                        {"image": the encoded file, "caption": str, "name": "STEM.tar/KEY"}),
                        group_size 1 for random access
    STEM.json           {"input": path, "examples": written, "skipped": {"missing_image": n,
                        "missing_caption": n, "undecodable_caption": n, "empty_caption": n}}

Both are written under a temporary name (+ ".tmp") and renamed when complete, the summary first,
so a shard is complete exactly when STEM.array_record exists. Running the command again skips the
complete shards and redoes the others (replacing leftover temporary files): an interrupted
conversion resumes. Images are not decoded here: the pipeline skips and reports corrupt ones.
"""

import argparse
import contextlib
import glob
import json
import logging
import os
import re
import tarfile

from array_record.python.array_record_module import ArrayRecordWriter

from jaxdiff.data.records import encode_record
from jaxdiff.data.shard_source import SHARD_SUFFIX

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
SKIP_REASONS = ("missing_image", "missing_caption", "undecodable_caption", "empty_caption")

_BRACES = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")
_TAR_SUFFIX = re.compile(r"\.(tar|tar\.gz|tgz)$")


def expand_braces(pattern):
    """'a{01..03}b{x,y}' -> ['a01bx', 'a01by', 'a02bx', ...]; a range keeps its first bound's
    width."""
    match = _BRACES.search(pattern)
    if not match:
        return [pattern]
    bounds = _RANGE.fullmatch(match.group(1))
    if bounds:
        low, high = bounds.groups()
        options = [str(value).zfill(len(low)) for value in range(int(low), int(high) + 1)]
    else:
        options = match.group(1).split(",")
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [path for option in options for path in expand_braces(head + option + tail)]


def input_shards(pattern):
    """The sorted input tar files of a pattern; fails in one sentence when one is missing, none
    matches, or two would write the same output shard."""
    paths = set()
    for path in expand_braces(pattern):
        if any(character in path for character in "*?["):
            paths.update(glob.glob(path))
        elif os.path.isfile(path):
            paths.add(path)
        else:
            raise ValueError(f"Input shard {path} (from {pattern!r}) does not exist.")
    if not paths:
        raise ValueError(f"No input shard matches {pattern!r}.")
    paths = sorted(paths)
    stems = {}
    for path in paths:
        other = stems.setdefault(shard_stem(path), path)
        if other != path:
            raise ValueError(f"Input shards {other} and {path} would both write "
                             f"{shard_stem(path)}{SHARD_SUFFIX}; give them distinct names.")
    return paths


def shard_stem(path):
    """'/data/00012.tar' -> '00012'."""
    return _TAR_SUFFIX.sub("", os.path.basename(path))


def _keyed_members(archive):
    """{key: {lower-case extension: member}} of the regular, non-hidden files of a tar."""
    examples = {}
    for member in archive.getmembers():
        directory, _, name = member.name.rpartition("/")
        stem, dot, extension = name.partition(".")
        if member.isfile() and dot and stem and not name.startswith("."):
            key = f"{directory}/{stem}" if directory else stem
            examples.setdefault(key, {})[extension.lower()] = member
    return examples


def _example(archive, members):
    """(record fields image + caption, None) of one key's members, or (None, skip reason)."""
    image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
    if image is None:
        return None, "missing_image"
    if "txt" not in members:
        return None, "missing_caption"
    try:
        caption = archive.extractfile(members["txt"]).read().decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, "undecodable_caption"
    if not caption:
        return None, "empty_caption"
    return {"image": archive.extractfile(image).read(), "caption": caption}, None


def write_json(path, value):
    with open(path + TEMP_SUFFIX, "w") as file:
        json.dump(value, file, indent=1)
    os.replace(path + TEMP_SUFFIX, path)


@contextlib.contextmanager
def shard_writer(output_dir, stem):
    """(ArrayRecordWriter, summary dict) of the shard STEM in output_dir, written under its
    temporary name (a stale one from an interrupted run is replaced). When the block ends
    without an error, the summary the block filled in is written as STEM.json and then the
    shard renamed to STEM.array_record: a shard is complete exactly when that file exists."""
    final = os.path.join(output_dir, stem + SHARD_SUFFIX)
    if os.path.exists(final + TEMP_SUFFIX):
        os.remove(final + TEMP_SUFFIX)
    writer, summary = ArrayRecordWriter(final + TEMP_SUFFIX, "group_size:1"), {}
    try:
        yield writer, summary
    finally:
        writer.close()
    write_json(os.path.join(output_dir, stem + ".json"), summary)
    os.replace(final + TEMP_SUFFIX, final)


def convert_shard(tar_path, output_dir):
    """Converts one tar shard to STEM.array_record + STEM.json in output_dir (module docstring);
    returns the summary."""
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    written = 0
    with shard_writer(output_dir, shard_stem(tar_path)) as (writer, summary):
        try:
            with tarfile.open(tar_path) as archive:
                for key, members in _keyed_members(archive).items():
                    fields, reason = _example(archive, members)
                    if reason:
                        skipped[reason] += 1
                        continue
                    fields["name"] = f"{os.path.basename(tar_path)}/{key}"
                    writer.write(encode_record(fields))
                    written += 1
        except tarfile.TarError as error:
            raise ValueError(f"{tar_path} is not a readable tar file ({error}).") from error
        summary.update(input=tar_path, examples=written, skipped=skipped)
    return summary


def convert(pattern, output_dir, process_index=0, process_count=1):
    """Converts this process's input shards (k % process_count == process_index) that are not
    complete yet; returns the input paths it converted."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count}).")
    paths = input_shards(pattern)[process_index::process_count]
    os.makedirs(output_dir, exist_ok=True)
    converted = []
    for path in paths:
        if os.path.exists(os.path.join(output_dir, shard_stem(path) + SHARD_SUFFIX)):
            logger.info("%s: already converted.", path)
            continue
        summary = convert_shard(path, output_dir)
        logger.info("%s: %d examples written, skipped %s.", path, summary["examples"],
                    summary["skipped"])
        converted.append(path)
    return converted


def process_placement(process_index, process_count):
    """(index, count) of this process: the flags, else jax's when jax.distributed is (made)
    initialised, else (0, 1)."""
    if (process_index is None) != (process_count is None):
        raise ValueError("--process_index and --process_count must be given together.")
    if process_index is not None:
        return process_index, process_count
    # Imported only here: jaxdiff.main (whose cluster detection this shares) loads the training
    # stack, which converting with explicit flags does not need.
    import jax

    from jaxdiff.main import cluster_detected, tpu_device_files

    if not jax.distributed.is_initialized() and cluster_detected(os.environ, tpu_device_files()):
        jax.distributed.initialize()
    if jax.distributed.is_initialized():
        return jax.process_index(), jax.process_count()
    return 0, 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m jaxdiff.data.shards",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("convert", help="webdataset tar shards -> ArrayRecord shards")
    command.add_argument("--input", required=True, help="tar shards: braces and globs")
    command.add_argument("--output", required=True, help="directory of the ArrayRecord shards")
    command.add_argument("--process_index", type=int, default=None,
                         help="this process (default: jax.process_index() or 0)")
    command.add_argument("--process_count", type=int, default=None,
                         help="processes sharing the work (default: jax.process_count() or 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    index, count = process_placement(args.process_index, args.process_count)
    converted = convert(args.input, args.output, index, count)
    logger.info("Process %d of %d: converted %d shard(s) into %s.", index, count,
                len(converted), args.output)


if __name__ == "__main__":
    main()
