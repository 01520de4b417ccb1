"""jaxdiff/train/loop.py (and its checkpoints) across processes: two local processes under
jax.distributed (gloo CPU collectives) train like one process with the same devices and global
batch, write one checkpoint together and both resume from it; a SIGTERM to one of them stops both
at one step, with that step's checkpoint."""

import os
import signal
import socket

import jax
import numpy as np

import train_toy as toy
from jaxdiff import methods
from jaxdiff.train import checkpoint, loop

# A constant learning rate so that the 4-step run and its resumption to 6 steps follow the
# schedule of one 6-step run.
OVERRIDES = {"optimizer.schedule": "constant", "checkpoint.every": 4}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
    workdir, out, port = str(tmp_path / "run"), str(tmp_path / "result"), free_port()
    workers = [
        toy.start_worker({"workdir": workdir, "out": out, "runs": [4, 6], "overrides": OVERRIDES,
                          "num_processes": 2, "process_id": i, "port": port}, num_devices=2)
        for i in range(2)]
    for worker in workers:
        toy.finish(worker, timeout=180)
    (record0, params0), (record1, params1) = (toy.load_worker_output(out, i) for i in range(2))
    assert record0 == record1
    assert (record0["process_count"], record0["device_count"]) == (2, 4)
    first, resumed = record0["runs"]
    assert sorted(map(int, first["losses"])) == [1, 2, 3, 4]
    assert sorted(map(int, resumed["losses"])) == [5, 6]  # both processes restored step 4

    config = toy.toy_config(num_steps=6, **OVERRIDES)
    reference = loop.train(config, str(tmp_path / "reference"), methods.build(config),
                           toy.toy_iterator(config.batch_size), devices=jax.devices()[:4])
    losses = {**first["losses"], **resumed["losses"]}
    np.testing.assert_allclose([losses[str(s)] for s in range(1, 7)],
                               [d["loss"] for d in reference.logged], rtol=1e-5)
    for name, value in toy.flat_params(reference.state.params).items():
        np.testing.assert_allclose(params0[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(params1[name], params0[name])


def test_sigterm_to_one_process_stops_both_at_one_step_with_a_checkpoint(tmp_path):
    # A preemption notice may reach one host first: JAX's distributed runtime agrees on a sync
    # step, and every process saves that step and stops there.
    workdir, out, port = str(tmp_path / "run"), str(tmp_path / "result"), free_port()
    workers = [
        toy.start_worker({"workdir": workdir, "out": out, "runs": [60], "delay": 0.2,
                          "overrides": {"checkpoint.every": 2}, "num_processes": 2,
                          "process_id": i, "port": port}, num_devices=2)
        for i in range(2)]
    toy.wait_for_checkpoint(workdir, 2, workers[0])
    workers[1].send_signal(signal.SIGTERM)
    for worker in workers:
        toy.finish(worker, timeout=120)
    runs = [toy.load_worker_output(out, i)[0]["runs"][0] for i in range(2)]
    assert all(run["preempted"] for run in runs)
    stopped_at = {max(map(int, run["losses"])) for run in runs}
    assert len(stopped_at) == 1 and 2 <= stopped_at.pop() < 60
    latest = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), keep=3).latest_step()
    assert latest == max(map(int, runs[0]["losses"]))
