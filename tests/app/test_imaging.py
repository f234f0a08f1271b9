import numpy as np

from app.imaging import hex_to_rgb, prediction_rgba

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
