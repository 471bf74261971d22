import keras
import numpy as np
import pytest

from aeloops.data import to_model_inputs
from aeloops.models import registry
from aeloops.runs.checkpoints import Checkpointer
from aeloops.training.callbacks import TIMINGS, Callback
from aeloops.training.trainer import Trainer


def fresh_trainer(name):
    keras.utils.set_random_seed(0)
    spec = registry.get(name)
    model = spec.build()
    return Trainer(model, spec.objective(model), mode="graph", steps_per_loop=3)


class StopAt(Callback):
    """Stops training after the compiled call that reaches ``step``, as a signal would."""

    def __init__(self, step):
        self.step = step

    def on_loop_end(self, trainer, logs):
        if int(trainer.step.numpy()) >= self.step:
            trainer.stop_training = True


def without_timings(history):
    return {name: values for name, values in history.items() if name not in TIMINGS}


# Each of the models' own random draws: input noise, a Gaussian code (beta-TC-VAE draws its code as the VAE does),
# the importance samples, the prior's samples, and the convolutional VAE's code and its pixels' dequantization noise.
@pytest.mark.parametrize("name", ["denoising", "vae", "iwae", "wae", "convvae"])
def test_resume_mid_epoch_restores_random_state_and_the_epochs_record_exactly(tmp_path, small_images, name):
    """Models that draw random numbers in training (input noise, VAE sampling) resume exactly, history included."""
    images = to_model_inputs(small_images[:256], registry.get(name).build().example_shape)
    uninterrupted = fresh_trainer(name)
    expected = uninterrupted.fit(images, epochs=2, batch_size=32, verbose=0)

    first = fresh_trainer(name)
    checkpointer = Checkpointer(first, tmp_path)
    # 8 steps an epoch, 3 per call: epoch 2 stops after its first call, at step 11.
    first.fit(images, epochs=2, batch_size=32, callbacks=[checkpointer, StopAt(9)], verbose=0)
    # A new process would build everything afresh, with other random state.
    keras.utils.set_random_seed(123)
    resumed = fresh_trainer(name)
    keras.utils.set_random_seed(456)
    assert Checkpointer(resumed, tmp_path).restore()
    assert int(resumed.step.numpy()) == 11
    assert resumed.epoch_progress.epoch == 1 and resumed.epoch_progress.steps == 3
    history = resumed.fit(images, epochs=2, initial_epoch=1, initial_step=11, batch_size=32, verbose=0)
    # The resumed epoch's row averages all 8 of its steps, 3 of them run before the stop.
    assert without_timings(history) == {name: values[1:] for name, values in without_timings(expected).items()}
    for ours, theirs in zip(resumed.model.weights, uninterrupted.model.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)


def test_saves_are_numbered_by_step_pruned_and_not_repeated(tmp_path, small_images):
    trainer = fresh_trainer("dense")
    checkpointer = Checkpointer(trainer, tmp_path, max_to_keep=2)
    trainer.fit(
        to_model_inputs(small_images[:256], (784,)), epochs=3, batch_size=64, callbacks=[checkpointer], verbose=0
    )
    assert [path.rsplit("/", 1)[1] for path in checkpointer.manager.checkpoints] == ["ckpt-8", "ckpt-12"]
    assert checkpointer.save() is None  # Step 12 is saved already.
    with pytest.raises(ValueError, match="max_to_keep must be at least 1"):
        Checkpointer(trainer, tmp_path, max_to_keep=0)


def test_restore_refuses_a_checkpoint_of_another_model(tmp_path, small_images):
    trainer = fresh_trainer("dense")
    Checkpointer(trainer, tmp_path).save()
    other = fresh_trainer("deep")
    with pytest.raises(ValueError, match="ckpt-0 is intact but does not fit"):
        Checkpointer(other, tmp_path).restore()
