"""Training from Python across calls: fit continues, a restored run finishes exactly, EMA leaves one set of weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops.data import to_model_inputs
from aeloops.models import load_model, registry
from aeloops.runs.checkpoints import Checkpointer
from aeloops.tensorboard.summaries import SummaryWriter
from aeloops.training.callbacks import TIMINGS, Callback
from aeloops.training.trainer import Trainer
from tests.test_summaries import tensors


@pytest.fixture(scope="module")
def images(small_images):
    return to_model_inputs(small_images[:512], (784,))


def trainer(seed=0, **options):
    keras.utils.set_random_seed(seed)
    return Trainer(registry.get("dense").build(), mode="graph", steps_per_loop=3, **options)


def untimed(history):
    return {name: values for name, values in history.items() if name not in TIMINGS}


def state(trained):
    variables = [*trained.model.weights, *trained.optimizer.variables, trained.step]
    return [variable.numpy() for variable in variables]


def assert_same_state(ours, theirs):
    for mine, expected in zip(state(ours), state(theirs), strict=True):
        np.testing.assert_array_equal(mine, expected)


class KilledAt(Callback):
    """Saves, then dies, once the step reaches ``step``: a process killed right after a checkpoint."""

    def __init__(self, checkpointer, step):
        self.checkpointer, self.step = checkpointer, step

    def on_loop_end(self, trainer, logs):
        if int(trainer.step.numpy()) >= self.step:
            self.checkpointer.save()
            raise RuntimeError("killed")


def test_a_second_fit_continues_the_epoch_count_with_new_shuffles_and_tensorboard_epochs(images, tmp_path):
    whole = trainer()
    expected = whole.fit(images, epochs=4, batch_size=64, verbose=0)
    twice = trainer()
    writer = SummaryWriter(twice, tmp_path, every_steps=1000)
    first = twice.fit(images, epochs=2, batch_size=64, callbacks=[writer], verbose=0)
    second = twice.fit(images, epochs=2, batch_size=64, callbacks=[writer], verbose=0)
    assert twice.completed_epochs == 4 and twice.run_first_epoch is None
    # Epochs 3 and 4 are the 4-epoch run's, shuffles included: the same weights, bit for bit.
    assert_same_state(twice, whole)
    for name, values in untimed(expected).items():
        assert first[name] + second[name] == values, name
    assert [step for step, _ in tensors(tmp_path / "train")["epoch_loss"]] == [1, 2, 3, 4]
    # initial_epoch keeps Keras's meaning: the count starts again where it says.
    again = twice.fit(images, epochs=1, initial_epoch=0, batch_size=64, verbose=0)
    assert len(again["loss"]) == 1 and twice.completed_epochs == 1


@pytest.mark.parametrize("mode", ["graph", "eager"])
def test_a_restored_run_finishes_from_the_saved_step_as_if_never_stopped(images, tmp_path, mode):
    # 8 steps an epoch, 3 a call (ending at steps 3, 6, 8, 11, 14, 16, ...): the kill at 14 is mid-epoch 2.
    keras.utils.set_random_seed(0)
    whole = Trainer(registry.get("dense").build(), mode=mode, steps_per_loop=3)
    expected = whole.fit(images, epochs=3, batch_size=64, verbose=0)

    keras.utils.set_random_seed(0)
    killed = Trainer(registry.get("dense").build(), mode=mode, steps_per_loop=3)
    checkpointer = Checkpointer(killed, tmp_path)
    with pytest.raises(RuntimeError, match="killed"):
        killed.fit(images, epochs=3, batch_size=64, callbacks=[checkpointer, KilledAt(checkpointer, 14)], verbose=0)

    keras.utils.set_random_seed(1)  # Other initial weights, as a new process would have.
    resumed = Trainer(registry.get("dense").build(), mode=mode, steps_per_loop=3)
    checkpointer = Checkpointer(resumed, tmp_path)
    assert checkpointer.restore()
    assert (resumed.completed_epochs, resumed.run_first_epoch, int(resumed.step.numpy())) == (1, 0, 14)
    rest = resumed.fit(images, epochs=3, batch_size=64, callbacks=[checkpointer], verbose=0)
    assert_same_state(resumed, whole)
    # The finished fit returns the uninterrupted fit's history, every row: the epoch before the kill came back
    # from the checkpoint, and the interrupted epoch's row covers all of its steps, those before the kill included.
    assert set(rest) == set(expected)
    for name, values in untimed(expected).items():
        assert rest[name] == values, name
    # The process that was interrupted finishes its own run alike, without a checkpoint.
    finished = killed.fit(images, epochs=3, batch_size=64, verbose=0)
    assert_same_state(killed, whole)
    assert finished["loss"] == expected["loss"]
    # Restored from its last checkpoint the run is complete: called again as it was, it trains no further.
    keras.utils.set_random_seed(2)
    rerun = Trainer(registry.get("dense").build(), mode=mode, steps_per_loop=3)
    assert Checkpointer(rerun, tmp_path).restore()
    again = rerun.fit(images, epochs=3, batch_size=64, verbose=0)
    assert_same_state(rerun, whole)
    assert untimed(again) == untimed(expected)  # Its history, as the run that finished it returned it.


def test_finishing_a_run_with_fewer_epochs_than_it_trained_says_what_to_pass(images, tmp_path):
    killed = trainer()
    checkpointer = Checkpointer(killed, tmp_path)
    with pytest.raises(RuntimeError, match="killed"):
        killed.fit(images, epochs=4, batch_size=64, callbacks=[checkpointer, KilledAt(checkpointer, 20)], verbose=0)
    # Killed at step 22 (calls end at 19, 22): 6 of epoch 3's 8 steps are trained.
    expected = r"began at epoch 1 and is partway through epoch 3, past epochs=2; pass epochs=3 or more to finish it"
    with pytest.raises(ValueError, match=expected):
        killed.fit(images, epochs=2, batch_size=64, verbose=0)
    history = killed.fit(images, epochs=3, batch_size=64, verbose=0)  # The advice, followed.
    # The fit's whole history: its two epochs before the kill and the one it finished.
    assert len(history["loss"]) == 3 and killed.completed_epochs == 3 and int(killed.step.numpy()) == 24


def test_after_fit_with_moving_averages_every_path_serves_the_averages_and_training_resumes_exactly(images, tmp_path):
    options = {"optimizer_options": {"use_ema": True, "ema_momentum": 0.9}}
    whole = trainer(**options)
    whole.fit(images, epochs=3, batch_size=64, verbose=0)

    averaged = trainer(**options)
    checkpointer = Checkpointer(averaged, tmp_path / "checkpoints")
    averaged.fit(images, epochs=2, batch_size=64, callbacks=[checkpointer], verbose=0)
    assert averaged.averages_in_use
    model, sample = averaged.model, images[:200]
    codes = model.encode(sample).numpy()
    # The model's variables hold the optimizer's averages, not the raw weights a checkpoint keeps.
    raw = trainer(seed=3, **options)
    Checkpointer(raw, tmp_path / "checkpoints").restore()
    assert not np.allclose(raw.model.encode(sample).numpy(), codes, atol=1e-3)
    with raw.averaged_weights():
        np.testing.assert_allclose(raw.model.encode(sample).numpy(), codes, atol=1e-6)
    np.testing.assert_allclose(averaged.predict(sample)["code"], codes, atol=1e-5)
    outputs = model(sample)
    bce = keras.losses.binary_crossentropy(sample, outputs["reconstruction"]).numpy().mean()
    np.testing.assert_allclose(averaged.evaluate(sample)["bce"], bce, rtol=1e-4)
    model.save(tmp_path / "model.keras")
    np.testing.assert_allclose(load_model(tmp_path / "model.keras").encode(sample).numpy(), codes, atol=1e-6)
    from aeloops.export import export

    served = tf.saved_model.load(str(export(model, tmp_path / "export")))
    np.testing.assert_allclose(served.signatures["encode"](tf.constant(sample))["code"].numpy(), codes, atol=1e-5)
    # Training goes on from the raw weights: a third epoch gives the 3-epoch run's state, in this
    # trainer and in one restored from the checkpoint the first fit left.
    averaged.fit(images, epochs=1, batch_size=64, verbose=0)
    assert_same_state(averaged, whole)
    raw.fit(images, epochs=3, batch_size=64, verbose=0)
    assert_same_state(raw, whole)
