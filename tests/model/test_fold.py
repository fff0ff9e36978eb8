import numpy as np
import pytest
from conftest import with_trained_statistics

from mriscan.model.architectures import build_model
from mriscan.model.fold import conv_bn_pairs, fold_batch_norm


@pytest.mark.parametrize("arch", ["lean", "compact"])
def test_folded_network_computes_the_same(arch):
    model = with_trained_statistics(build_model(arch, 64, seed=1))
    folded = fold_batch_norm(model)
    images = np.random.default_rng(1).uniform(0, 1, (8, 64, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(folded.predict_on_batch(images), model.predict_on_batch(images), atol=1e-5)
    assert not any("BatchNormalization" in type(layer).__name__ for layer in folded.layers)
    assert len(model.get_weights()) > len(folded.get_weights())  # the original is left as it was


def test_networks_without_foldable_pairs_are_returned_unchanged():
    import keras

    seed = build_model("seed", 64)
    assert fold_batch_norm(seed) is seed
    inputs = keras.Input((16, 16, 1))
    convolved = keras.layers.Conv2D(4, 3)(inputs)
    normalised = keras.layers.BatchNormalization()(convolved)
    shared = keras.Model(inputs, keras.layers.Add()([convolved, normalised]))  # conv output read twice
    assert conv_bn_pairs(shared) == {} and fold_batch_norm(shared) is shared


def test_bundle_predicts_with_the_folded_network(tiny_bundle):
    from mriscan.model.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    images = np.random.default_rng(2).uniform(0, 1, (3, 64, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(bundle.inference_model.predict_on_batch(images),
                               bundle.model.predict_on_batch(images), atol=1e-5)
