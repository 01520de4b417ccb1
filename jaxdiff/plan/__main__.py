"""python -m jaxdiff.plan --config=configs/x.py:preset --target=... (jaxdiff/plan/__init__.py)."""

from absl import app, flags
from ml_collections import config_flags

from jaxdiff.plan import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with a preset: configs/x.py:preset.",
    lock_config=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}.")
    try:
        cli.run(_CONFIG.value, flags.FLAGS["config"].serialize().partition("=")[2])
    except ValueError as error:
        raise SystemExit(f"jaxdiff plan: {error}") from None


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
