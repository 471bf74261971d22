import numpy as np
import pytest
import tensorflow as tf

from aeloops.tensorboard.images import as_images, image_grid, labeled_grid, write_png


def test_as_images_accepts_every_model_layout():
    assert as_images(np.zeros((3, 784))).shape == (3, 28, 28, 1)
    assert as_images(np.zeros((3, 28, 28, 1))).shape == (3, 28, 28, 1)
    assert as_images(np.zeros((3, 28, 28))).shape == (3, 28, 28, 1)
    assert as_images(np.zeros((3, 10))).shape == (3, 1, 10, 1)
    np.testing.assert_array_equal(as_images(np.array([[[-1.0, 2.0]]])), [[[[0.0], [1.0]]]])
    # With the images' own shape, any model layout becomes the picture it came from.
    colour = np.random.default_rng(0).random((3, 8, 6, 3)).astype(np.float32)
    for layout in (colour.reshape(3, -1), colour.reshape(3, 8, 18)):
        np.testing.assert_array_equal(as_images(layout, (8, 6, 3)), colour)


def test_colour_grids_keep_their_colours_and_labels_do_not_hide_them():
    red = np.zeros((2, 5, 5, 3), np.float32)
    red[..., 0] = 1.0
    grid = image_grid([red.reshape(2, -1)], padding=1, shape=(5, 5, 3))
    assert grid.shape == (7, 13, 3)
    np.testing.assert_array_equal(grid[1:6, 1:6], np.broadcast_to([255, 0, 0], (5, 5, 3)))
    labeled = labeled_grid([red], ["input"], shape=(5, 5, 3))
    scale = round(84 / 5)
    assert labeled.shape[1:] == ((2 * 7 + 2) * scale, 3)  # The picture's width: the name sits above the row.
    # The pictures sit under their name, enlarged, still pure red; the name is written in black.
    assert (labeled == [255, 0, 0]).all(axis=-1).sum() == 2 * (5 * scale) ** 2
    assert (labeled == 0).all(axis=-1)[: -(7 + 2) * scale].any()


def test_unnamed_rows_get_no_band():
    rows = [np.zeros((3, 4, 4)), np.ones((3, 4, 4))]
    named, unnamed = labeled_grid(rows, ["first", ""], scale=2), labeled_grid(rows, ["", ""], scale=2)
    assert unnamed.shape == image_grid(rows).repeat(2, 0).repeat(2, 1).shape  # Without names: the grid, enlarged.
    assert named.shape[0] > unnamed.shape[0] and named.shape[1] == unnamed.shape[1]


def test_grid_places_each_image_and_round_trips_through_png(tmp_path):
    first = np.zeros((2, 4, 4))
    second = np.ones((2, 4, 4))
    grid = image_grid([first, second], padding=1)
    assert grid.shape == (2 * 5 + 1, 2 * 5 + 1, 1) and grid.dtype == np.uint8
    assert grid[1:5, 1:5].max() == 0 and grid[6:10, 6:10].min() == 255
    write_png(tmp_path / "grid.png", grid)
    np.testing.assert_array_equal(tf.io.decode_png((tmp_path / "grid.png").read_bytes()).numpy(), grid)
    assert [path.name for path in tmp_path.iterdir()] == ["grid.png"]  # No temporary file is left.
    with pytest.raises(ValueError, match="Every row needs shape"):
        image_grid([np.zeros((2, 4, 4)), np.zeros((3, 4, 4))])


def assert_named_rows(picture, rows):
    """Asserts that ``picture`` holds ``rows`` rows of digits, each under a name legible on a 400-pixel card."""
    # Digits are light on black: the name bands are the only tall runs of mostly white pixel rows.
    white = np.concatenate([[False], picture.mean(axis=1) > 200, [False]])
    edges = np.flatnonzero(np.diff(white.astype(int)))
    bands = [(top, bottom) for top, bottom in zip(edges[::2], edges[1::2]) if bottom - top > 10]
    assert len(bands) == rows, bands
    for top, bottom in bands:
        ink = np.flatnonzero((picture[top:bottom] < 128).any(axis=1))
        # Shrunk to 400 pixels wide, a name is at least 8 pixels tall.
        assert len(ink) and (ink[-1] - ink[0] + 1) * 400 / picture.shape[1] >= 8, (top, bottom, ink)


def test_row_names_stay_legible_when_tensorboard_shrinks_a_wide_picture_to_its_card():
    rows = [np.zeros((10, 28, 28)), np.zeros((10, 28, 28))]  # Ten examples a row, as the CLI pictures them.
    grid = labeled_grid(rows, ["input", "reconstruction"])[..., 0]
    assert grid.shape[1] == (10 * 30 + 2) * 3
    assert_named_rows(grid, 2)
