"""Test setup shared by every test: CPU only (libtpu loadable by several test processes), 8
forced host devices for mesh tests, the toy
train helpers of tests/train/ importable from the tests outside it, the repository's
benchmarks/ package importable by the benchmark tests, and a private jaxdiff cache folder in
every test process."""

import os
import sys

# Must happen before jax is imported anywhere in the test process. The planner's tests
# (tests/plan) load libtpu, which locks /tmp/libtpu_lockfile per process unless told that
# several processes (pytest-xdist's workers) may load it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

# tests/test_main.py and tests/benchmarks/test_train.py `import train_toy` from tests/train/. Test
# modules are imported in pytest's default "prepend" mode (no __init__.py files), which puts only
# each test file's own directory on sys.path; appended, this directory shadows nothing.
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "train"))
# The benchmark tests import `benchmarks` (a directory of scripts, not an installed package).
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# jaxdiff's cache (Inception weights, reference statistics) goes to a fresh folder per test
# process, so tests neither read nor fill the user's ~/.cache/jaxdiff.
if "JAXDIFF_CACHE" not in os.environ:
    import tempfile

    os.environ["JAXDIFF_CACHE"] = tempfile.mkdtemp(prefix="jaxdiff_cache_")
