"""The bundle's ONNX network: the same outputs as Keras (fp32) or close to them (int8), checked like the
weights, scan without TensorFlow."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import brain_like, run_cli_in_fresh_process, save_seed_bundle, with_trained_statistics

from mriscan.errors import ModelBundleError
from mriscan.io.hashing import bytes_sha256
from mriscan.model.architectures import build_model
from mriscan.model.bundle import CARD_FILE, add_network_file, load_bundle, update_card
from mriscan.model.export import (
    FP32,
    INT8,
    MAX_INT8_DIFFERENCE,
    export_onnx,
    make_network_file,
    network_for_scan,
    quantize_onnx,
)
from mriscan.model.fold import fold_batch_norm
from mriscan.model.runtime import ONNX_FILE, OnnxNetwork


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


def test_bundles_hold_the_network_and_scan_loads_it(tiny_bundle):
    """save_bundle's default: fp32, which computes what Keras does (this card's thresholds were not chosen on it)."""
    card = json.loads((tiny_bundle / CARD_FILE).read_text())
    assert (tiny_bundle / ONNX_FILE).is_file() and card["network_file"]["precision"] == FP32
    assert card["network_file"]["max_difference_from_keras"] <= 1e-4

    for_scan, with_keras = load_bundle(tiny_bundle, keras=False), load_bundle(tiny_bundle)

    assert for_scan.model is None and for_scan.network is not None
    assert with_keras.network is not None  # predictions go through the network file whenever there is one
    images = np.stack([np.random.default_rng(i).uniform(0, 1, (64, 64, 1)) for i in range(5)]).astype(np.float32)
    np.testing.assert_allclose(for_scan.predict(images), with_keras.inference_model.predict_on_batch(images).ravel(),
                               atol=1e-6)


@pytest.mark.slow
def test_scan_never_imports_tensorflow(tiny_bundle, tmp_path):
    import cv2

    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), brain_like(1))
    args = ["scan", tmp_path / "in", "--out", tmp_path / "out.csv", "--model", tiny_bundle, "--quiet", "--workers", "1"]
    assert run_cli_in_fresh_process(args) == (0, False, False)
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


def _older_bundle(folder: Path) -> Path:
    """A bundle as written before model.onnx existed."""
    older = save_seed_bundle(folder)
    card = json.loads((older / CARD_FILE).read_text())
    del card["network_file"]
    (older / CARD_FILE).write_text(json.dumps(card))
    (older / ONNX_FILE).unlink()
    return older


def test_older_bundles_without_the_file_are_scanned_with_keras_and_can_be_given_it(tmp_path):
    older = _older_bundle(tmp_path / "older")

    assert load_bundle(older, keras=False).model is not None  # Keras, as before

    card = add_network_file(older)
    assert card.network_file.precision == FP32  # its thresholds were chosen on Keras' outputs
    assert load_bundle(older, keras=False).network is not None


def test_without_onnx_runtime_a_network_file_is_refused_not_replaced_by_keras(tiny_bundle, tmp_path, monkeypatch):
    import importlib.util

    older = _older_bundle(tmp_path / "older")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnxruntime" else real_find_spec(name, *args))

    with pytest.raises(ModelBundleError, match="pip install onnxruntime"):
        load_bundle(tiny_bundle, keras=False)
    assert load_bundle(older, keras=False).model is not None  # no network file: Keras, as before


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


def _brain_inputs(seeds: range, size: int = 64) -> np.ndarray:
    """Brain-like slices as model inputs in [0, 1], (n, size, size, 1): images like those the network sees."""
    return np.stack([cv2.resize(brain_like(seed, lesion=seed % 2 == 0), (size, size), interpolation=cv2.INTER_AREA)
                     for seed in seeds])[..., np.newaxis].astype(np.float32) / 255


@pytest.fixture(scope="module")
def compact_int8():
    """A folded 'compact' network (random weights, trained-like statistics), fp32 and int8, and its calibration."""
    model = fold_batch_norm(with_trained_statistics(build_model("compact", 64, seed=3)))
    calibration = _brain_inputs(range(32))
    fp32 = export_onnx(model)
    return model, calibration, fp32, quantize_onnx(fp32, calibration)


def test_int8_network_stays_close_to_keras(compact_int8, trained_bundle, holdout_folder):
    """On compact's structure, and on the network fit trained (whose outputs spread over (0, 1))."""
    from mriscan.data.loader import load_all

    model, _, _, int8 = compact_int8
    images = _brain_inputs(range(100, 116))
    assert np.abs(OnnxNetwork(int8)(images) - model.predict_on_batch(images)).max() <= 0.05

    trained = load_bundle(trained_bundle)
    assert trained.card.network_file.precision == INT8
    records = load_all(sorted(holdout_folder.rglob("*.png")), trained.preprocess_config, workers=1)
    images = np.stack([record.model_input for record in records])
    keras_output = trained.inference_model.predict_on_batch(images)
    assert keras_output.std() > 0.05
    assert np.abs(trained.network(images) - keras_output).max() <= 0.05


def test_quantization_is_deterministic(compact_int8):
    """The card pins the file's sha256: the same network and images must give the same bytes."""
    _, calibration, fp32, int8 = compact_int8
    assert bytes_sha256(quantize_onnx(fp32, calibration)) == bytes_sha256(int8)


def test_the_first_convolution_and_the_output_layer_stay_fp32_and_the_other_convolutions_are_int8(compact_int8):
    import onnx
    from onnx import TensorProto

    graph = onnx.load_from_string(compact_int8[3]).graph
    stored = {tensor.name: tensor.data_type for tensor in graph.initializer}
    made_by = {output: node for node in graph.node for output in node.output}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    assert len(convolutions) == 7

    assert stored.get(convolutions[0].input[1]) == TensorProto.FLOAT  # its kernel, as exported
    assert made_by[convolutions[0].input[0]].op_type == "Transpose"  # the float input image, not dequantized
    for convolution in convolutions[1:]:
        kernel = made_by[convolution.input[1]]
        assert kernel.op_type == "DequantizeLinear" and stored[kernel.input[0]] == TensorProto.INT8
        assert made_by[convolution.input[0]].op_type == "DequantizeLinear"  # uint8 activations in

    dense = next(node for node in graph.node if node.op_type == "Gemm")
    assert stored.get(dense.input[1]) == TensorProto.FLOAT
    assert made_by["probability"].op_type != "DequantizeLinear"  # probabilities not rounded to 1/255 steps
    images = _brain_inputs(range(100, 116))
    assert len(np.unique(OnnxNetwork(compact_int8[3])(images))) == len(images)


def _amplified_head(model, images: np.ndarray):
    """``model`` with its last layer scaled so that its outputs spread over (0, 1): random weights give
    nearly equal features for every image, and amplifying their differences amplifies int8's errors."""
    import keras

    head = model.layers[-1]
    kernel, bias = head.get_weights()
    logits = keras.Model(model.input, head.input).predict_on_batch(images) @ kernel
    scale = 2 / float(logits.std())
    head.set_weights([kernel * scale, bias - float(logits.mean()) * scale])
    return model


def test_a_broken_quantization_is_refused_and_fit_keeps_fp32():
    model = _amplified_head(fold_batch_norm(with_trained_statistics(build_model("compact", 64, seed=3))),
                            _brain_inputs(range(32)))
    calibration, check = _brain_inputs(range(32)), _brain_inputs(range(100, 116))

    with pytest.raises(ModelBundleError, match=f"at most {MAX_INT8_DIFFERENCE:g}.*save the network in fp32"):
        make_network_file(model, calibration, check)

    kept = network_for_scan(model, calibration, check)
    assert kept.entry["precision"] == FP32 and "quantization failed" in kept.entry["int8_refused"]
    assert kept.entry["sha256"] == bytes_sha256(kept.data) == bytes_sha256(export_onnx(model))
