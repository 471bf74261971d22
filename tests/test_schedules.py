import numpy as np
import pytest

from aeloops.objectives.schedules import constant, cyclical, linear_warmup


def values(schedule, steps):
    return [float(schedule(step)) for step in steps]


def test_constant_and_linear_warmup():
    assert values(constant(0.3), [0, 10**6]) == pytest.approx([0.3, 0.3])
    np.testing.assert_allclose(values(linear_warmup(2.0, 10), [0, 5, 10, 50]), [0.0, 1.0, 2.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(values(linear_warmup(1.0, 4, start=0.5), [0, 2, 4]), [0.5, 0.75, 1.0], rtol=1e-6)


def test_cyclical_ramps_then_holds_each_period():
    schedule = cyclical(1.0, period=10, ramp_fraction=0.5)
    np.testing.assert_allclose(
        values(schedule, [0, 1, 5, 9, 10, 12, 25]), [0.0, 0.2, 1.0, 1.0, 0.0, 0.4, 1.0], rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: constant(-1.0), "weight must be a number >= 0"),
        (lambda: linear_warmup(1.0, 0), "steps must be a number >= 1"),
        (lambda: cyclical(1.0, 10, ramp_fraction=0.0), "ramp_fraction"),
    ],
)
def test_bad_schedules_are_refused(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()
