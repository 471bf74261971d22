import numpy as np
import pytest
import tensorflow as tf

from aeloops.images import as_images, image_grid, write_png


def test_as_images_accepts_every_model_layout():
    assert as_images(np.zeros((3, 784))).shape == (3, 28, 28)
    assert as_images(np.zeros((3, 28, 28, 1))).shape == (3, 28, 28)
    assert as_images(np.zeros((3, 28, 28))).shape == (3, 28, 28)
    assert as_images(np.zeros((3, 10))).shape == (3, 1, 10)
    np.testing.assert_array_equal(as_images(np.array([[[-1.0, 2.0]]])), [[[0.0, 1.0]]])


def test_grid_places_each_image_and_round_trips_through_png(tmp_path):
    first = np.zeros((2, 4, 4))
    second = np.ones((2, 4, 4))
    grid = image_grid([first, second], padding=1)
    assert grid.shape == (2 * 5 + 1, 2 * 5 + 1, 1) and grid.dtype == np.uint8
    assert grid[1:5, 1:5].max() == 0 and grid[6:10, 6:10].min() == 255
    write_png(tmp_path / "grid.png", grid)
    np.testing.assert_array_equal(tf.io.decode_png((tmp_path / "grid.png").read_bytes()).numpy(), grid)
    assert not (tmp_path / "grid.png.partial").exists()
    with pytest.raises(ValueError, match="Every row needs shape"):
        image_grid([np.zeros((2, 4, 4)), np.zeros((3, 4, 4))])
