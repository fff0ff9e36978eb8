"""The bundle's ONNX network: the same outputs as Keras, checked like the weights, scan without TensorFlow."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import brain_like, save_seed_bundle, with_trained_statistics

from mriscan.architectures import build_model
from mriscan.errors import ModelBundleError
from mriscan.fold import fold_batch_norm
from mriscan.model import CARD_FILE, add_network_file, load_bundle, update_card
from mriscan.onnx_network import ONNX_FILE, OnnxNetwork, export_onnx


@pytest.mark.parametrize(("arch", "size"), [("compact", 64), ("compact", 75), ("lean", 64), ("seed", 48)])
def test_exported_network_computes_what_keras_does(arch, size):
    """Odd sizes too: 'same' padding with stride 2 pads one pixel more at the end than at the start."""
    model = fold_batch_norm(with_trained_statistics(build_model(arch, size, seed=3)))
    images = np.random.default_rng(1).uniform(0, 1, (16, size, size, 1)).astype(np.float32)

    onnx_output = OnnxNetwork(export_onnx(model))(images)

    np.testing.assert_allclose(onnx_output, model.predict_on_batch(images), atol=1e-5)


def test_a_layer_without_translation_is_refused():
    import keras

    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Dense(1, activation="tanh")(keras.layers.Flatten()(inputs))
    with pytest.raises(ModelBundleError, match="tanh"):
        export_onnx(keras.Model(inputs, outputs))


def test_fit_bundles_hold_the_network_and_scan_loads_it(tiny_bundle):
    card = json.loads((tiny_bundle / CARD_FILE).read_text())
    assert (tiny_bundle / ONNX_FILE).is_file() and card["network_file"]["max_difference_from_keras"] <= 1e-4

    for_scan, with_keras = load_bundle(tiny_bundle, keras=False), load_bundle(tiny_bundle)

    assert for_scan.model is None and for_scan.network is not None
    images = np.stack([np.random.default_rng(i).uniform(0, 1, (64, 64, 1)) for i in range(5)]).astype(np.float32)
    np.testing.assert_allclose(for_scan.predict(images), with_keras.predict(images), atol=1e-6)


def test_scan_never_imports_tensorflow(tiny_bundle, tmp_path):
    import cv2

    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), brain_like(1))
    program = (
        "import sys\n"
        "from mriscan.cli import main\n"
        f"sys.argv = ['mriscan', 'scan', {str(tmp_path / 'in')!r}, '--out', {str(tmp_path / 'out.csv')!r}, "
        f"'--model', {str(tiny_bundle)!r}, '--quiet', '--workers', '1']\n"
        "try:\n    main()\nexcept SystemExit as stop:\n    code = stop.code\n"
        "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["0", "False", "False"], result.stderr
    assert "a.png" in (tmp_path / "out.csv").read_text()


def test_a_damaged_or_missing_network_file_is_refused(tiny_bundle, tmp_path):
    damaged = shutil.copytree(tiny_bundle, tmp_path / "damaged")
    data = bytearray((damaged / ONNX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelBundleError, match="does not match its card"):
        load_bundle(damaged, keras=False)

    missing = shutil.copytree(tiny_bundle, tmp_path / "missing")
    (missing / ONNX_FILE).unlink()
    with pytest.raises(ModelBundleError, match="missing"):
        load_bundle(missing, keras=False)


def test_older_bundles_without_the_file_are_scanned_with_keras_and_can_be_given_it(tmp_path):
    older = save_seed_bundle(tmp_path / "older")
    card = json.loads((older / CARD_FILE).read_text())
    del card["network_file"]
    (older / CARD_FILE).write_text(json.dumps(card))
    (older / ONNX_FILE).unlink()

    assert load_bundle(older, keras=False).model is not None  # Keras, as before

    add_network_file(older)
    assert load_bundle(older, keras=False).network is not None


def test_without_onnx_runtime_scan_falls_back_to_keras(tiny_bundle, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnxruntime" else real_find_spec(name, *args))
    bundle = load_bundle(tiny_bundle, keras=False)
    assert bundle.network is None and bundle.model is not None


def test_the_card_entry_cannot_be_changed_afterwards(tiny_bundle):
    with pytest.raises(ModelBundleError, match="network_file"):
        update_card(Path(tiny_bundle), network_file={"name": "other.onnx", "sha256": "0" * 64})


def test_a_network_that_is_not_a_chain_is_refused():
    import keras

    inputs = keras.Input((16, 16, 1))
    convolved = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    added = keras.layers.Add()([convolved, keras.layers.Conv2D(4, 1)(inputs)])  # a second branch
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(added))
    with pytest.raises(ModelBundleError, match="chain"):
        export_onnx(keras.Model(inputs, outputs))
