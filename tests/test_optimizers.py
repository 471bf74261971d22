import keras
import pytest

from aeloops.training.optimizers import make_optimizer, names


def test_adadelta_by_name_uses_learning_rate_one():
    optimizer = make_optimizer("adadelta")
    assert isinstance(optimizer, keras.optimizers.Adadelta)
    assert float(optimizer.learning_rate) == pytest.approx(1.0)


def test_learning_rate_override_and_instance_passthrough():
    assert float(make_optimizer("Adam", 0.01).learning_rate) == pytest.approx(0.01)
    instance = keras.optimizers.SGD(0.5)
    assert make_optimizer(instance) is instance
    assert "adam" in names()


@pytest.mark.parametrize(
    ("name", "rate", "message"),
    [
        ("lbfgs", None, "Unknown optimizer 'lbfgs'"),
        ("adam", -1.0, "positive number"),
        ("adam", 0.0, "positive"),
    ],
)
def test_bad_optimizer_arguments_are_refused(name, rate, message):
    with pytest.raises(ValueError, match=message):
        make_optimizer(name, rate)
