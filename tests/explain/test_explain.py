"""Tests of mriscan.explain.lime, .factory and .keras_explain: superpixels, batched LIME, Grad-CAM, pointing game."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import brain_like
from lime.lime_image import LimeImageExplainer

from mriscan.data.preprocess import PreprocessConfig, preprocess
from mriscan.errors import ExplainError
from mriscan.explain.base import brain_region
from mriscan.explain.factory import make_explainer
from mriscan.explain.keras_explain import GradCamExplainer
from mriscan.explain.lime import LIME_BATCH_SIZE, LimeExplainer, hidden_tissue, mri_superpixels
from mriscan.explain.overlay import TOWARD_COLOUR, blend_evidence
from mriscan.explain.pointing import pointed_region, pointing_game_hit

SIZE = 64
TOP_LEFT = (16, 16)
BOTTOM_RIGHT = (47, 47)


def _disc(centre: tuple[int, int], radius: float) -> np.ndarray:
    rows, columns = np.mgrid[0:SIZE, 0:SIZE]
    return (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= radius**2


def _slice(blobs: tuple[tuple[int, int], ...] = (TOP_LEFT, BOTTOM_RIGHT)) -> np.ndarray:
    """A (64, 64, 1) model input: a dim textured head with bright round blobs."""
    rng = np.random.default_rng(7)
    image = np.where(_disc((32, 32), 30), 0.3 + 0.05 * rng.random((SIZE, SIZE)), 0.0)
    for centre in blobs:
        image[_disc(centre, 6)] = 0.95
    return image.astype(np.float32)[..., np.newaxis]


LESION = (32, 21)


def _rim() -> np.ndarray:
    return _disc((32, 32), 31) & ~_disc((32, 32), 29.5)


def _skull_slice() -> np.ndarray:
    """A (64, 64, 1) model input: textured brain, a dark ventricle, a bright lesion and a brighter skull rim."""
    rng = np.random.default_rng(3)
    image = np.where(_disc((32, 32), 29.5), 0.35 + 0.05 * rng.random((SIZE, SIZE)), 0.0)
    image[_disc((32, 38), 5)] = 0.05
    image[_disc(LESION, 5)] = 0.62
    image[_rim()] = 1.0
    return image.astype(np.float32)[..., np.newaxis]


def _brightness_model() -> keras.Model:
    """A network whose tumour logit adds up brightness above 0.5: the skull rim counts more than the lesion."""
    above = keras.layers.Conv2D(1, 1, activation="relu")
    dense = keras.layers.Dense(1, activation="sigmoid")
    above.build((None, SIZE, SIZE, 1))
    dense.build((None, SIZE * SIZE))
    above.set_weights([np.ones((1, 1, 1, 1), np.float32), np.array([-0.5], np.float32)])
    dense.set_weights([np.full((SIZE * SIZE, 1), 40.0 / SIZE**2, np.float32), np.array([-1.0], np.float32)])
    return keras.Sequential([keras.Input((SIZE, SIZE, 1)), above, keras.layers.Flatten(), dense])


def _classified(explainer: LimeExplainer, image: np.ndarray) -> np.ndarray:
    """The (n, S, S) perturbed images ``explainer`` classifies while explaining ``image``."""
    seen: list[np.ndarray] = []
    classify = explainer.classify
    explainer.classify = lambda images: seen.append(images[..., 0].copy()) or classify(images)
    explainer.explain(image)
    del explainer.classify
    return np.concatenate(seen)


def _quadrant_layers(sign: float = 1.0) -> list[keras.layers.Layer]:
    """Layers of a network whose tumour logit is sign * (8 * top-left mean brightness - 2).

    A 3x3 identity convolution (so Grad-CAM has a Conv2D to use), then a dense layer that only
    looks at the top-left quadrant.
    """
    conv = keras.layers.Conv2D(1, 3, padding="same", activation="relu", name="conv")
    dense = keras.layers.Dense(1, activation="sigmoid", name="probability")
    conv.build((None, SIZE, SIZE, 1))
    dense.build((None, SIZE * SIZE))
    kernel = np.zeros((3, 3, 1, 1), np.float32)
    kernel[1, 1] = 1.0
    conv.set_weights([kernel, np.zeros(1, np.float32)])
    quadrant = np.zeros((SIZE, SIZE), np.float32)
    quadrant[: SIZE // 2, : SIZE // 2] = sign * 8.0 / (SIZE // 2) ** 2
    dense.set_weights([quadrant.reshape(-1, 1), np.array([-2.0 * sign], np.float32)])
    return [conv, keras.layers.Flatten(), dense]


def _sequential(sign: float = 1.0) -> keras.Model:
    return keras.Sequential([keras.Input((SIZE, SIZE, 1)), *_quadrant_layers(sign)])


def _functional(layers: list[keras.layers.Layer]) -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 1))
    tensor = inputs
    for layer in layers:
        tensor = layer(tensor)
    return keras.Model(inputs, tensor)


def _probability(model: keras.Model, image: np.ndarray) -> float:
    return float(np.asarray(model(image[np.newaxis], training=False)).reshape(-1)[0])


# --- superpixels ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_superpixels_of_a_slice_number_50_to_100_and_never_leave_the_brain(seed: int) -> None:
    image = preprocess(brain_like(seed, lesion=seed % 2 == 0), PreprocessConfig(image_size=150))
    labels = mri_superpixels(image)
    assert labels.shape == (150, 150) and labels.dtype == np.int32
    assert 50 <= labels.max() <= 100
    assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1))
    brain = brain_region(image)
    assert np.all(labels[~brain] == 0) and np.all(labels[brain] > 0)
    assert labels[0, 0] == 0 and brain[75, 75]


def test_the_brain_keeps_dark_structures_inside_and_leaves_out_a_bright_rim() -> None:
    image = _skull_slice()[..., 0]
    brain = brain_region(image)
    assert brain[32, 32] and brain[32, 21]  # the dark ventricle and the lesion
    assert not brain[_rim()].any() and not brain[0, 0]


def test_an_image_without_a_head_is_all_superpixels() -> None:
    black = np.zeros((SIZE, SIZE), np.float32)
    assert mri_superpixels(black).min() == 1
    explanation = LimeExplainer(_sequential(), SIZE, num_samples=100).explain(black[..., np.newaxis])
    assert np.isfinite(explanation.weights).all() and explanation.segments.min() == 1


def test_superpixels_are_deterministic() -> None:
    image = preprocess(brain_like(5), PreprocessConfig(image_size=150))
    assert np.array_equal(mri_superpixels(image), mri_superpixels(image))


def test_a_hidden_superpixel_shows_the_tissue_around_it_not_black() -> None:
    image = _skull_slice()[..., 0]
    segments = mri_superpixels(image)
    fill = hidden_tissue(image, segments)
    brain = segments > 0
    tissue = np.median(image[brain])
    assert np.abs(fill[brain] - tissue).max() < 0.1  # neither the lesion nor the ventricle nor black
    np.testing.assert_array_equal(fill[~brain], image[~brain])


# --- LIME -------------------------------------------------------------------------------------


def test_lime_classifies_the_images_stock_lime_renders() -> None:
    """The vectorised rendering classifies exactly what LIME's own loop would, with the same draws.

    Stock LIME hides label 0 too, but the fill outside the brain is the image itself, so hiding it
    changes no pixel: both classify the same images.
    """
    explainer = LimeExplainer(_sequential(), SIZE, num_samples=200, seed=3)
    image = _slice()
    ours = _classified(explainer, image)
    segments = mri_superpixels(image)
    stock: list[np.ndarray] = []
    LimeImageExplainer(random_state=3, feature_selection="none").explain_instance(
        np.repeat(image, 3, axis=2),
        lambda images: stock.append(images[..., 0]) or explainer.classify(images),
        labels=(1,),
        top_labels=None,
        hide_color=np.repeat(hidden_tissue(image, segments)[..., np.newaxis], 3, axis=2),
        num_features=int(segments.max()) + 1,
        num_samples=200,
        batch_size=10,
        segmentation_fn=lambda _: segments,
    )
    np.testing.assert_array_equal(ours, np.concatenate(stock))


def test_the_segment_outside_the_brain_is_never_hidden_nor_weighted() -> None:
    explainer = LimeExplainer(_brightness_model(), SIZE, num_samples=200, seed=5)
    image = _skull_slice()
    perturbed = _classified(explainer, image)
    explanation = explainer.explain(image)
    outside = explanation.segments == 0
    assert outside.sum() > 0.3 * outside.size
    assert np.all(perturbed[:, outside] == image[..., 0][outside])
    assert np.any(perturbed[:, ~outside] != image[..., 0][~outside])
    assert np.all(explanation.weights[outside] == 0.0) and np.abs(explanation.weights).max() > 0
    rgb = blend_evidence(image[..., 0], explanation.weights)
    np.testing.assert_array_equal(rgb[outside], np.repeat(image[..., 0][outside][:, np.newaxis], 3, axis=1))


def test_lime_points_at_the_lesion_not_at_a_brighter_skull() -> None:
    """A network that adds up brightness: the skull rim is brighter than the lesion, but it is not brain."""
    image = _skull_slice()
    explanation = LimeExplainer(_brightness_model(), SIZE, num_samples=300).explain(image)
    pointed = pointed_region(explanation.weights)
    assert pointed.any() and not (pointed & ~brain_region(image)).any()
    assert pointing_game_hit(explanation.weights, _disc(LESION, 5))


def test_lime_classifies_in_batches_of_256() -> None:
    explainer = LimeExplainer(_sequential(), SIZE, num_samples=1000)
    sizes: list[int] = []
    classify = explainer.classify

    def counting(images: np.ndarray) -> np.ndarray:
        sizes.append(len(images))
        return classify(images)

    explainer.classify = counting
    explainer.explain(_slice())
    assert LIME_BATCH_SIZE == 256 and sizes == [256, 256, 256, 232]


def test_lime_is_deterministic_for_a_seed() -> None:
    model, image = _sequential(), _slice()
    first = LimeExplainer(model, SIZE, num_samples=200, seed=11).explain(image)
    again = LimeExplainer(model, SIZE, num_samples=200, seed=11).explain(image)
    other = LimeExplainer(model, SIZE, num_samples=200, seed=12).explain(image)
    assert np.array_equal(first.weights, again.weights)
    assert not np.array_equal(first.weights, other.weights)


def test_lime_points_at_the_region_the_model_uses() -> None:
    model, image = _sequential(), _slice()
    explanation = make_explainer(model, "lime", image_size=SIZE, num_samples=500).explain(image)
    assert pointing_game_hit(explanation.weights, _disc(TOP_LEFT, 6))
    assert not pointing_game_hit(explanation.weights, _disc(BOTTOM_RIGHT, 6))
    ignored = np.abs(explanation.weights[_disc(BOTTOM_RIGHT, 6)]).max()
    assert ignored < 0.2 * explanation.weights.max()
    assert explanation.probability == pytest.approx(_probability(model, image), abs=1e-6)
    assert explanation.method == "lime" and "500 samples" in explanation.details


def test_lime_given_a_network_explains_that_network_as_scan_computes_it() -> None:
    """The bundle's network file is what scan predicts with: LIME must explain it, not the Keras model.

    The network here looks at the top-left quadrant with the opposite sign to ``model``, so the
    top-left blob pushes toward tumour for one and away for the other.
    """
    from mriscan.model.bundle import network_probability
    from mriscan.model.export import export_onnx
    from mriscan.model.runtime import OnnxNetwork

    model, image = _sequential(), _slice()
    network = OnnxNetwork(export_onnx(_sequential(sign=-1.0)))
    explanation = make_explainer(model, "lime", image_size=SIZE, num_samples=500, network=network).explain(image)
    assert explanation.probability == network_probability(network, image[np.newaxis])[0]
    assert explanation.probability != pytest.approx(_probability(model, image), abs=0.1)
    top_left = explanation.weights[_disc(TOP_LEFT, 6)]
    assert top_left.mean() < 0 and np.argmin(explanation.weights) in np.flatnonzero(_disc(TOP_LEFT, 6))


def test_a_network_for_another_input_size_is_refused() -> None:
    from mriscan.model.export import export_onnx
    from mriscan.model.runtime import OnnxNetwork

    network = OnnxNetwork(export_onnx(_sequential()))
    with pytest.raises(ExplainError, match=r"shape \(64, 64, 1\); expected \(150, 150, 1\)"):
        make_explainer(None, "lime", image_size=150, network=network)


def test_lime_rejects_too_few_samples() -> None:
    with pytest.raises(ExplainError, match="num_samples=5"):
        LimeExplainer(_sequential(), SIZE, num_samples=5)


def test_a_model_with_two_outputs_per_image_is_refused() -> None:
    model = keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ExplainError, match="one probability per image"):
        LimeExplainer(model, SIZE)


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ExplainError, match="method='shap'"):
        make_explainer(_sequential(), "shap", image_size=SIZE)


# --- Grad-CAM ---------------------------------------------------------------------------------


def test_gradcam_on_sequential_points_at_what_raises_the_probability() -> None:
    model, image = _sequential(), _slice(blobs=(TOP_LEFT,))
    explanation = GradCamExplainer(model, SIZE).explain(image)
    assert explanation.weights.shape == (SIZE, SIZE) and explanation.segments is None
    assert pointing_game_hit(explanation.weights, _disc(TOP_LEFT, 6), tolerance_px=1)
    assert explanation.probability == pytest.approx(_probability(model, image), abs=1e-6)


def test_gradcam_is_negative_where_the_evidence_is_against_tumour() -> None:
    image = _slice(blobs=(TOP_LEFT,))
    weights = GradCamExplainer(_sequential(sign=-1.0), SIZE).explain(image).weights
    assert weights.max() <= 0.0
    lowest = np.unravel_index(np.argmin(weights), weights.shape)
    assert _disc(TOP_LEFT, 7)[lowest]


def test_gradcam_is_the_same_on_sequential_and_functional_models() -> None:
    image = _slice()
    first = GradCamExplainer(_sequential(), SIZE).explain(image)
    second = GradCamExplainer(_functional(_quadrant_layers()), SIZE).explain(image)
    np.testing.assert_allclose(first.weights, second.weights, rtol=1e-5, atol=1e-7)


def test_gradcam_uses_the_logit_before_a_separate_sigmoid_or_after_a_reshape() -> None:
    image = _slice()
    reference = GradCamExplainer(_sequential(), SIZE).explain(image).weights
    conv, flatten, dense = _quadrant_layers()
    linear = keras.layers.Dense(1, name="logit")
    linear.build((None, SIZE * SIZE))
    linear.set_weights(dense.get_weights())
    split = _functional([conv, flatten, linear, keras.layers.Activation("sigmoid")])
    reshaped = keras.Sequential([keras.Input((SIZE, SIZE, 1)), conv, flatten, dense, keras.layers.Reshape((1,))])
    for model in (split, reshaped):
        np.testing.assert_allclose(
            GradCamExplainer(model, SIZE).explain(image).weights, reference, rtol=1e-4, atol=1e-6
        )


def test_gradcam_on_the_compact_architecture_weighs_the_brain_only() -> None:
    """An untrained network's map covers the whole head and the background; the explanation keeps the brain."""
    from mriscan.model.architectures import build_model

    model = build_model("compact", SIZE)
    image = preprocess(brain_like(4), PreprocessConfig(image_size=SIZE))
    explainer = make_explainer(model, "gradcam", image_size=SIZE)
    explanation = explainer.explain(image)
    assert explanation.weights.shape == (SIZE, SIZE) and np.isfinite(explanation.weights).all()
    assert explanation.probability == pytest.approx(_probability(model, image), abs=1e-5)
    brain = brain_region(image)
    assert 0.2 < brain.mean() < 0.9
    assert np.abs(explainer.whole_input_map(image)[0][~brain]).min() > 0  # what overlays coloured before
    assert np.all(explanation.weights[~brain] == 0.0) and np.all(explanation.weights[brain] != 0.0)


def test_gradcam_points_at_the_lesion_not_at_a_brighter_skull() -> None:
    """A network that adds up brightness: its map peaks on the skull rim, which is not brain.

    Inside the brain the weights are the map's own (tumour logit), and the overlay scales its
    colours to the brain's strongest weight, which gets full colour; outside it stays grey.
    """
    image, explainer = _skull_slice(), GradCamExplainer(_brightness_model(), SIZE)
    whole, _ = explainer.whole_input_map(image)
    explanation = explainer.explain(image)
    brain = brain_region(image)
    assert whole[_rim()].max() > 2 * whole[brain].max() > 0
    assert np.all(explanation.weights[~brain] == 0.0)
    np.testing.assert_array_equal(explanation.weights[brain], whole[brain])
    assert pointing_game_hit(explanation.weights, _disc(LESION, 5), tolerance_px=0)
    grey = image[..., 0]
    rgb = blend_evidence(grey, explanation.weights)
    np.testing.assert_array_equal(rgb[~brain], np.repeat(grey[~brain][:, np.newaxis], 3, axis=1))
    peak = np.unravel_index(np.argmax(explanation.weights), grey.shape)
    np.testing.assert_allclose(rgb[peak], 0.3 * grey[peak] + 0.7 * np.array(TOWARD_COLOUR))


def test_gradcam_needs_a_convolution() -> None:
    model = keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    with pytest.raises(ExplainError, match="Conv2D"):
        GradCamExplainer(model, SIZE)


# --- pointing game ----------------------------------------------------------------------------


def test_pointing_game_hits_when_the_maximum_is_on_the_lesion() -> None:
    weights = np.zeros((20, 20))
    weights[5, 5] = 1.0
    lesion = np.zeros((20, 20), bool)
    lesion[4:7, 4:7] = True
    assert pointing_game_hit(weights, lesion, tolerance_px=0)
    weights[15, 15] = 2.0
    assert not pointing_game_hit(weights, lesion)


def test_pointing_game_tolerance_dilates_the_lesion() -> None:
    weights = np.zeros((20, 20))
    weights[10, 14] = 1.0
    lesion = np.zeros((20, 20), bool)
    lesion[8:13, 8:12] = True
    assert not pointing_game_hit(weights, lesion, tolerance_px=2)
    assert pointing_game_hit(weights, lesion, tolerance_px=3)


def test_pointing_game_counts_a_top_superpixel_touching_the_lesion() -> None:
    segments = np.repeat(np.arange(4), 25).reshape(10, 10)
    weights = np.array([0.1, 0.5, -0.2, 0.3])[segments]
    lesion = np.zeros((10, 10), bool)
    lesion[4, 9] = True
    assert pointing_game_hit(weights, lesion, tolerance_px=0)


def test_pointing_game_misses_without_positive_evidence() -> None:
    lesion = np.ones((5, 5), bool)
    assert not pointing_game_hit(np.zeros((5, 5)), lesion)
    assert not pointing_game_hit(-np.ones((5, 5)), lesion)


def test_pointing_game_checks_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        pointing_game_hit(np.zeros((5, 5)), np.zeros((4, 5), bool))
