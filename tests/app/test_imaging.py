import numpy as np

from app.imaging import _magma_rgba, hex_to_rgb, label_lut, labels_rgba, mask_rgba, prediction_rgba, uncertainty_rgba

CLASSES = [{"name": "background", "color": "#000000"}, {"name": "mito", "color": "#ff0000"},
           {"name": "er", "color": "#0000ff"}]


def test_prediction_colours_the_winning_class_with_its_probability_as_alpha():
    prob = np.array([[[0.7, 0.2, 0.1, 0.4]],
                     [[0.2, 0.7, 0.3, 0.2]],
                     [[0.1, 0.1, 0.6, 0.4]]], np.float32)   # last pixel: background and er tied
    rgba = prediction_rgba(prob, CLASSES)
    assert rgba.shape == (1, 4, 4) and rgba.dtype == np.uint8
    assert rgba[0, 0, 3] == 0                                  # background stays transparent
    assert tuple(rgba[0, 1, :3]) == hex_to_rgb("#ff0000") and rgba[0, 1, 3] == round(0.7 * 255)
    assert tuple(rgba[0, 2, :3]) == hex_to_rgb("#0000ff") and rgba[0, 2, 3] == round(0.6 * 255)
    assert rgba[0, 3, 3] == 0                                  # a tie goes to the lower class, as argmax


def test_prediction_of_a_large_random_slice_matches_argmax():
    rng = np.random.default_rng(0)
    prob = rng.random((2, 256, 256), dtype=np.float32)
    prob /= prob.sum(0)
    rgba = prediction_rgba(prob, CLASSES[:2])
    assert np.array_equal(rgba[..., 3] > 0, prob.argmax(0) == 1)


def test_every_overlay_is_its_colour_table_looked_up_pixel_by_pixel():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (64, 80), dtype=np.uint8)
    assert np.array_equal(labels_rgba(labels, CLASSES), label_lut(CLASSES)[labels])
    mask = rng.integers(0, 3, (64, 80))
    gt = mask_rgba(mask, "#00ff66")
    assert np.array_equal(gt[mask == 0], np.zeros(((mask == 0).sum(), 4), np.uint8))
    assert (gt[mask > 0] == [0, 255, 102, 255]).all()
    u = rng.random((64, 80), dtype=np.float32)
    heat = uncertainty_rgba(u)
    assert np.array_equal(heat[..., 3], (u * 255).astype(np.uint8))           # alpha rises with the value
    assert (heat[u > 0.9, 0] > heat[u < 0.1, 0].max()).all()                  # magma: brighter when less sure
    assert not _magma_rgba()[:, 3].any()                                       # the cached table stays untouched
