import numpy as np
import pytest

from mriscan.model.train import sample_weights


def test_sample_weights_give_each_class_half_the_total():
    labels = np.array([0] * 90 + [1] * 10)
    sources = np.array(["a"] * 80 + ["b"] * 10 + ["a"] * 10)
    for balance in (0.0, 0.5, 1.0):
        weights = sample_weights(labels, sources, balance)
        assert weights[labels == 0].sum() == pytest.approx(50)
        assert weights[labels == 1].sum() == pytest.approx(50)


@pytest.mark.parametrize(("balance", "share_of_b"), [(0.0, 10 / 90), (0.5, np.sqrt(10) / (np.sqrt(10) + np.sqrt(80))),
                                                     (1.0, 0.5)])
def test_source_balance_moves_a_small_source_towards_an_equal_share(balance, share_of_b):
    labels = np.zeros(90, int)
    sources = np.array(["a"] * 80 + ["b"] * 10)
    weights = sample_weights(labels, sources, balance)
    assert weights[sources == "b"].sum() / weights.sum() == pytest.approx(share_of_b)
    assert len(set(weights[sources == "a"].round(6))) == 1  # images of one source weigh the same
