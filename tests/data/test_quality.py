import numpy as np
from conftest import brain_like

from mriscan.data.preprocess import preprocess
from mriscan.data.quality import input_statistics, low_quality_reasons, training_ranges, unusual_reasons


def test_good_image_has_no_reasons():
    assert low_quality_reasons(brain_like(0)) == []


def test_tiny_blank_and_elongated_images_are_low_quality():
    assert any("tiny" in r for r in low_quality_reasons(np.random.default_rng(0).uniform(0, 255, (20, 20))))
    assert any("near-constant" in r for r in low_quality_reasons(np.full((200, 200), 9.0)))
    assert any("aspect" in r for r in low_quality_reasons(np.random.default_rng(0).uniform(0, 255, (100, 400))))


def test_unusual_statistics_are_found_against_training_ranges():
    stats = [input_statistics(brain_like(i), preprocess(brain_like(i))) for i in range(30)]
    ranges = training_ranges(stats)
    assert unusual_reasons(stats[0], ranges) == []
    odd = dict(stats[0], input_mean=ranges["input_mean"][1] + 0.5)
    assert unusual_reasons(odd, ranges)


def test_input_statistics_summarise_the_content_of_the_model_input():
    model_input = preprocess(brain_like(3))
    content = model_input[..., 0] > 0.02
    stats = input_statistics(brain_like(3), model_input)
    assert stats["content_fraction"] == content.mean()
    assert abs(stats["input_mean"] - model_input[..., 0][content].mean()) < 1e-6
    assert abs(stats["input_std"] - model_input[..., 0][content].std()) < 1e-6
    blank = input_statistics(np.zeros((90, 30)), np.zeros((8, 8, 1), np.float32))
    assert blank == {"content_fraction": 0.0, "input_mean": 0.0, "input_std": 0.0, "aspect_ratio": 3.0}

