import numpy as np
import pytest

from ml.predicted_class import predicted_class


@pytest.mark.parametrize("classes", [1, 2, 3, 5])
def test_equals_numpy_argmax_ties_included(classes):
    rng = np.random.default_rng(classes)
    prob = rng.random((classes, 37, 41), dtype=np.float32)
    prob /= prob.sum(0)
    prob[:, :5, :5] = 0.5            # every class tied: the lowest wins
    prob[:, 10, :] = prob[0, 10, :]  # tied along a row, at other values
    prob[0, 20, :], prob[1:, 20, :] = 0.1, 0.45   # tied above background
    got = predicted_class(prob)
    assert got.dtype == np.uint8 and got.shape == prob.shape[1:]
    assert np.array_equal(got, prob.argmax(0))


def test_any_trailing_shape_and_float64():
    rng = np.random.default_rng(0)
    for shape in [(3, 17), (2, 4, 6, 8)]:
        prob = rng.random(shape)
        assert np.array_equal(predicted_class(prob), prob.argmax(0))


def test_a_later_class_must_beat_the_running_best_not_only_its_predecessor():
    prob = np.array([[0.6], [0.1], [0.3]])    # class 2 beats class 1 but not class 0
    assert predicted_class(prob).tolist() == [0]
    prob = np.array([[0.2], [0.5], [0.3]])    # class 2 beats class 0 but not class 1
    assert predicted_class(prob).tolist() == [1]


def test_input_is_not_modified():
    prob = np.array([[0.2, 0.9], [0.8, 0.1]], np.float32)
    before = prob.copy()
    predicted_class(prob)
    assert np.array_equal(prob, before)


@pytest.mark.parametrize("shape", [(0, 4), (257, 2)])
def test_bad_shapes_are_refused_with_a_message(shape):
    with pytest.raises(ValueError, match="classes"):
        predicted_class(np.zeros(shape, np.float32))
