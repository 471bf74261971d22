"""Where a training epoch's batches come from: the shuffled order of resident arrays, and the per-step binary draws."""

import numpy as np
import tensorflow as tf

from aeloops.data.sources import ResidentSource, bernoulli_draw


def test_every_epoch_has_its_own_order_and_each_order_repeats_exactly():
    source = ResidentSource({"input": np.zeros((1000, 3), np.float32)}, batch_size=64, seed=5)
    orders = [source.batch_indices(epoch, shuffle=True).numpy() for epoch in range(3)]
    for order in orders:  # 15 full batches: 960 distinct examples, the remainder dropped.
        assert order.shape == (15, 64) and len(np.unique(order)) == 960 and order.max() < 1000
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    np.testing.assert_array_equal(source.batch_indices(1, shuffle=True).numpy(), orders[1])  # Keyed by epoch alone.
    other_seed = ResidentSource({"input": np.zeros((1000, 3), np.float32)}, batch_size=64, seed=6)
    assert not np.array_equal(other_seed.batch_indices(0, shuffle=True).numpy(), orders[0])
    np.testing.assert_array_equal(source.batch_indices(2, shuffle=False).numpy().ravel(), np.arange(960))


def test_dynamic_binarization_draws_anew_at_every_step_with_the_pixels_intensity_as_probability():
    intensities = tf.constant(np.linspace(0.0, 1.0, 11, dtype=np.float32)[None].repeat(4000, axis=0))
    first, again, later = (bernoulli_draw(intensities, 7, tf.constant(step, tf.int64)).numpy() for step in (3, 3, 4))
    assert set(np.unique(first)) <= {0.0, 1.0}
    np.testing.assert_array_equal(first, again)  # Stateless: a resumed run draws what the first did.
    # Step 4 draws anew: a pixel of intensity p differs with probability 2p(1 - p), 0.3 over these intensities.
    assert abs(np.mean(first != later) - 0.3) < 0.02
    np.testing.assert_allclose(first.mean(axis=0), intensities[0].numpy(), atol=0.03)
    assert first[:, 0].max() == 0 and first[:, -1].min() == 1
