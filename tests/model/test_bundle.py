import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import REPO, brain_like, fingerprints_of, save_seed_bundle

from mriscan.errors import ModelBundleError, OutputError
from mriscan.io.hashing import file_sha256
from mriscan.model.bundle import (
    CARD_FILE,
    MODEL_FILE,
    apply_temperature,
    load_bundle,
    pinned_files,
    read_card,
    save_bundle,
    update_card,
)
from mriscan.model.card import ModelCard


def _copy(bundle, tmp_path):
    return shutil.copytree(bundle, tmp_path / "copy")


def test_bundle_round_trip(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert bundle.model_id == file_sha256(tiny_bundle / MODEL_FILE)
    assert bundle.threshold == 0.5 and bundle.review_threshold == 0.3
    assert bundle.preprocess_config.image_size == 64
    probability = bundle.predict(np.zeros((3, 64, 64, 1), np.float32))
    assert probability.shape == (3,) and ((0 <= probability) & (probability <= 1)).all()


def test_missing_folder_and_files(tiny_bundle, tmp_path):
    with pytest.raises(ModelBundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")
    copy = _copy(tiny_bundle, tmp_path)
    (copy / MODEL_FILE).unlink()
    with pytest.raises(ModelBundleError, match="missing"):
        load_bundle(copy)


def test_truncated_weights_are_refused(tiny_bundle, tmp_path):
    copy = _copy(tiny_bundle, tmp_path)
    data = (copy / MODEL_FILE).read_bytes()
    (copy / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelBundleError, match="does not match its card"):
        load_bundle(copy)


def test_card_model_id_mismatch_is_refused(tiny_bundle, tmp_path):
    copy = _copy(tiny_bundle, tmp_path)
    card = json.loads((copy / CARD_FILE).read_text())
    card["model_id"] = "0" * 64
    (copy / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelBundleError, match="does not match its card"):
        load_bundle(copy)


def test_corrupt_card_is_refused(tiny_bundle, tmp_path):
    copy = _copy(tiny_bundle, tmp_path)
    (copy / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelBundleError, match="not a readable model card"):
        load_bundle(copy)


def test_lambda_layer_is_refused_by_safe_mode(tmp_path):
    import keras

    inputs = keras.Input((64, 64, 1))
    outputs = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Flatten()(keras.layers.Lambda(lambda x: x * 2.0)(inputs)))
    model = keras.Model(inputs, outputs)
    card = ModelCard.from_json({"model_id": "", "architecture": "evil", "input_size": 64, "preprocessing": {},
                                "threshold": 0.5, "review_threshold": 0.4})
    save_bundle(model, card, tmp_path / "evil")
    with pytest.raises(ModelBundleError, match="safe_mode"):
        load_bundle(tmp_path / "evil")


def test_not_a_zip_is_refused(tiny_bundle, tmp_path):
    copy = _copy(tiny_bundle, tmp_path)
    (copy / MODEL_FILE).write_bytes(b"garbage")
    card = json.loads((copy / CARD_FILE).read_text())
    card["model_id"] = file_sha256(copy / MODEL_FILE)
    (copy / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelBundleError, match="could not be loaded safely"):
        load_bundle(copy)
    assert not zipfile.is_zipfile(copy / MODEL_FILE)


def test_save_refuses_existing_bundle_and_keeps_old_on_overwrite(tiny_bundle, tmp_path):
    from mriscan.model.architectures import build_model

    copy = _copy(tiny_bundle, tmp_path)
    old_id = load_bundle(copy).model_id
    card = read_card(copy)
    with pytest.raises(OutputError, match="--overwrite"):
        save_bundle(build_model("seed", 64), card, copy)
    save_bundle(build_model("seed", 64, seed=7), card, copy, overwrite=True)
    replaced = list(tmp_path.glob("copy.replaced-*"))
    assert len(replaced) == 1 and load_bundle(replaced[0]).model_id == old_id
    assert load_bundle(copy).model_id != old_id
    assert not list(tmp_path.glob(".copy.partial-*"))


def test_the_fingerprints_of_the_training_images_are_pinned_and_a_changed_file_refused(tmp_path, write_png):
    seen = [write_png(tmp_path / "seen" / f"s{i}.png", brain_like(i)) for i in range(4)]
    folder = save_seed_bundle(tmp_path / "model", seen=seen)
    bundle = load_bundle(folder)
    entry = bundle.card.fingerprints
    assert entry.images == 4 and pinned_files(bundle.card)[entry.file_name] == file_sha256(folder / entry.file_name)
    assert bundle.training_fingerprints.keys == tuple(file_sha256(path) for path in seen)
    with pytest.raises(ModelBundleError, match="cannot change"):
        update_card(folder, fingerprints={**entry.to_json(), "images": 3})
    (folder / entry.file_name).write_bytes(fingerprints_of(seen[:3]).to_bytes())  # well formed, not the pinned one
    with pytest.raises(ModelBundleError, match="fingerprints.json.gz does not match its card"):
        load_bundle(folder)
    (folder / entry.file_name).unlink()
    with pytest.raises(ModelBundleError, match="fingerprints.json.gz is missing"):
        load_bundle(folder)


def test_a_bundle_made_before_fingerprints_has_none(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert bundle.card.fingerprints is None and bundle.training_fingerprints is None
    assert list(pinned_files(bundle.card)) == ["model.keras", "model.onnx"]


def test_temperature_one_is_identity_and_monotone():
    p = np.array([0.1, 0.4, 0.9])
    assert np.allclose(apply_temperature(p, 1.0), p)
    hot = apply_temperature(p, 2.0)
    assert np.all(np.diff(hot) > 0) and abs(hot[2] - 0.5) < abs(p[2] - 0.5)


def test_update_card_adds_figures_but_never_what_defines_the_model(tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    before = load_bundle(bundle)
    update_card(bundle, proxy_evaluation={"figshare_sensitivity": 0.97})
    after = load_bundle(bundle)
    assert after.card.extra["proxy_evaluation"] == {"figshare_sensitivity": 0.97}
    assert after.model_id == before.model_id and after.threshold == before.threshold
    with pytest.raises(ModelBundleError, match="threshold"):
        update_card(bundle, threshold=0.01)
    assert load_bundle(bundle).threshold == before.threshold


@pytest.mark.slow
def test_loading_holds_back_what_keras_needs_only_for_other_features(tiny_bundle):
    """Start-up: Keras loads without scikit-learn and matplotlib, which stay importable afterwards."""
    script = (
        "import sys\n"
        "from mriscan.model.bundle import load_bundle\n"
        f"load_bundle({str(tiny_bundle)!r})\n"
        "assert 'keras' in sys.modules and 'sklearn' not in sys.modules and 'matplotlib' not in sys.modules\n"
        "import matplotlib, sklearn\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, cwd=REPO)

