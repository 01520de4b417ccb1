"""Time grids: hand values from each grid's formula, the ends every grid keeps, and snapping to
a discrete chain."""

import numpy as np
import pytest

from jaxdiff.core import processes, schedules, time_grids
from jaxdiff.core.schedule_registry import make_schedule


def narrow_logsnr(t):
    """logSNR(t) = 5 - 10 t, inside EDM's range, so no end is clamped: t = (5 - logSNR) / 10."""
    return 5.0 - 10.0 * t


def test_uniform_and_power_hand_values():
    np.testing.assert_allclose(time_grids.time_grid("uniform", 4), [1.0, 0.75, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(time_grids.time_grid("power", 2, power=2.0), [1.0, 0.25, 0.0])
    # With t_end: the attenuation paper's grid, linspace(1, t_min, K), then 0.
    np.testing.assert_allclose(time_grids.time_grid("uniform", 3, t_end=1e-4),
                               [1.0, 0.50005, 1e-4, 0.0])
    np.testing.assert_allclose(time_grids.time_grid("uniform", 1, t_end=1e-4), [1.0, 0.0])
    # t_end + (1 - t_end)(1 - k / 2)^3 for k = 0, 1, then 0.
    np.testing.assert_allclose(time_grids.time_grid("power", 3, t_end=0.1, power=3.0),
                               [1.0, 0.2125, 0.1, 0.0])


def test_logsnr_and_karras_hand_values():
    # Uniform in logSNR from 5 to -5 on a linear logSNR is uniform in t.
    np.testing.assert_allclose(time_grids.time_grid("logsnr", 4, narrow_logsnr),
                               [1.0, 0.75, 0.5, 0.25, 0.0], atol=1e-6)
    # Karras: sigma_k = (a + k / 2 (b - a))^7, a = e^(2.5 / 7), b = e^(-2.5 / 7); t = (5 +
    # 2 log sigma) / 10.
    a, b = np.exp(2.5 / 7), np.exp(-2.5 / 7)
    middle = (5.0 + 14.0 * np.log(0.5 * (a + b))) / 10.0
    np.testing.assert_allclose(time_grids.time_grid("karras", 2, narrow_logsnr, rho=7.0),
                               [1.0, middle, 0.0], atol=1e-6)
    # Between uniform in sigma (rho = 1, sigma = (e^2.5 + e^-2.5) / 2) and uniform in logSNR
    # (rho -> inf, t = 0.5).
    assert 0.5 < middle < (5.0 + 2.0 * np.log(np.cosh(2.5))) / 10.0


def test_logsnr_grids_start_at_edm_sigma_max_and_keep_the_prior():
    """logSNR 10 - 20 t: the layout starts at -2 log 80 = -8.7641, not at logSNR(1) = -10, and
    the first time is still 1."""
    times = time_grids.time_grid("logsnr", 4, lambda t: 10.0 - 20.0 * t)
    start = -2.0 * np.log(80.0)
    expected_logsnr = start + (10.0 - start) * np.arange(5) / 4
    np.testing.assert_allclose(times[1:], ((10.0 - expected_logsnr) / 20.0)[1:], atol=1e-6)
    assert times[0] == 1.0


def test_attenuation_grids_end_at_t_min_then_zero():
    """Attenuation's logSNR is -inf at t = 1: the logSNR grid spans [-2 log 80, logSNR(t_min)]
    and is finite everywhere."""
    times = time_grids.time_grid("logsnr", 3, processes.attenuation_logsnr, t_end=1e-4)
    assert times[0] == 1.0 and times[-2] == 1e-4 and times[-1] == 0.0 and len(times) == 4
    middle = float(processes.attenuation_logsnr(times[1]))
    np.testing.assert_allclose(middle, 0.5 * (-2.0 * np.log(80.0) + np.log((1 - 1e-4)**2 / 1e-4)),
                               rtol=1e-4)


def test_snapping_keeps_the_steps_distinct_and_on_the_chain():
    # Steps round(10 t) - 1 = 9, 4, 0, 0, 0 become 9, 4, 2, 1, 0.
    np.testing.assert_allclose(
        time_grids.snap_to_chain(np.array([1.0, 0.52, 0.13, 0.04, 0.03, 0.0]), 10),
        [1.0, 0.5, 0.3, 0.2, 0.1, 0.0])
    chain = make_schedule("cosine_betas", num_timesteps=1000)
    for grid in time_grids.GRIDS:
        times = chain.sampling_times(50, grid)
        steps = np.rint(times[:-1] * 1000)
        assert len(times) == 51 and times[0] == 1.0 and times[-2] == 0.001
        np.testing.assert_allclose(times[:-1] * 1000, steps, atol=1e-9)  # on the chain
        assert np.all(np.diff(times) < 0)
    # On a chain, uniform is improved DDPM's respacing: kept steps 0, 333, 666, 999.
    np.testing.assert_allclose(chain.sampling_times(4, "uniform"),
                               [1.0, 0.667, 0.334, 0.001, 0.0])
    np.testing.assert_allclose(time_grids.respaced_time_grid(1000, 4),
                               [1.0, 0.667, 0.334, 0.001, 0.0])


def test_inverse_of_a_schedule():
    cosine = lambda t: schedules.cosine_logsnr(t, -15.0, 15.0)  # noqa: E731
    targets = np.array([-10.0, 0.0, 1.7611832, 12.0])
    times = time_grids.times_at_logsnr(cosine, targets)
    np.testing.assert_allclose(times[1:3], [0.5, 0.25], atol=1e-6)
    np.testing.assert_allclose(np.asarray(cosine(times)), targets, atol=1e-4)


@pytest.mark.parametrize("call, message", [
    (lambda: time_grids.time_grid("cubic", 4), "Unknown time grid"),
    (lambda: time_grids.time_grid("uniform", 0), "at least one step"),
    (lambda: time_grids.time_grid("karras", 4), "needs the schedule"),
    (lambda: time_grids.time_grid("power", 4, power=-1.0), "power must be positive"),
    (lambda: time_grids.snap_to_chain(np.linspace(1, 0, 12), 10), "distinct steps"),
])
def test_bad_grids_fail_in_one_sentence(call, message):
    with pytest.raises(ValueError, match=message):
        call()
