"""``mriscan promote`` and ``fit --init-from/--exclude``: retrain, then replace a model only if not worse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from conftest import save_seed_bundle

from mriscan.cli import EXIT_BELOW_FLOOR, EXIT_FATAL, EXIT_OK, cli
from mriscan.evaluation.paired_tests import DelongResult, McnemarResult
from mriscan.evaluation.promote import PromotionRule, decide, models_legend
from mriscan.model.bundle import load_bundle

NOT_WORSE = McnemarResult(only_a_correct=1, only_b_correct=1, p_two_sided=1.0, p_b_worse=0.75, method="exact")
SAME_AUROC = DelongResult(0.9, 0.9, 0.0, 0.02, 0.0, 1.0, 0.5, (-0.04, 0.04))


def _constant_bundle(out: Path, threshold: float) -> Path:
    """A network with all weights zero: P(tumour) = 0.5 for every image (AUROC 0.5)."""
    return save_seed_bundle(out, threshold=threshold, review_threshold=min(threshold, 0.4), zero_weights=True,
                            created="2020-01-01T00:00:00+00:00")


def _promote(new: Path, current: Path, data: Path):
    return CliRunner().invoke(cli, ["promote", str(new), "--over", str(current), "--data", str(data),
                                    "--workers", "1", "--bootstrap", "100"])


@pytest.mark.parametrize(("sensitivity_new", "accepted"), [(0.95, True), (0.9499, False), (0.99, True)])
def test_sensitivity_tolerance_is_one_point_absolute(sensitivity_new, accepted):
    assert PromotionRule().sensitivity_tolerance == 0.01
    assert decide(0.96, sensitivity_new, NOT_WORSE, SAME_AUROC).accepted is accepted


def test_significantly_more_missed_tumours_or_lower_auroc_is_refused():
    missed = McnemarResult(only_a_correct=8, only_b_correct=0, p_two_sided=0.0078, p_b_worse=0.0039, method="exact")
    decision = decide(0.96, 0.96, missed, SAME_AUROC)
    assert not decision.accepted and "McNemar" in decision.reasons[0]
    lower = DelongResult(0.95, 0.85, -0.1, 0.03, -3.3, 0.001, 0.0005, (-0.16, -0.04))
    decision = decide(0.96, 0.97, NOT_WORSE, lower)
    assert not decision.accepted and "DeLong" in decision.reasons[0]


def test_a_model_that_calls_everything_a_tumour_is_refused(trained_bundle, holdout_folder, tmp_path):
    current = Path(shutil.copytree(trained_bundle, tmp_path / "production"))
    useless = _constant_bundle(tmp_path / "everything_tumour", threshold=0.5)  # sensitivity 1.0, AUROC 0.5
    result = _promote(useless, current, holdout_folder)
    assert result.exit_code == EXIT_FATAL, result.output
    reasons = result.output.split("not promoted because")[1].split("A: the model in service")[0]
    assert "DeLong" in reasons and "sensitivity" not in reasons
    assert load_bundle(current).model_id == load_bundle(trained_bundle).model_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["everything_tumour", "production"]


def test_a_better_model_is_promoted_and_the_old_one_kept(trained_bundle, holdout_folder, tmp_path):
    current = _constant_bundle(tmp_path / "production", threshold=0.6)  # finds no tumour
    old_id = load_bundle(current).model_id
    result = _promote(trained_bundle, current, holdout_folder)
    assert result.exit_code == EXIT_OK, result.output + repr(result.exception)
    kept = tmp_path / f"production.v1-{old_id[:12]}"
    assert load_bundle(kept).model_id == old_id and str(kept) in result.output
    promoted = load_bundle(current)
    assert promoted.model_id == load_bundle(trained_bundle).model_id
    lineage = promoted.card.lineage
    assert lineage["parent_model_id"] == old_id and lineage["parent_created"] == "2020-01-01T00:00:00+00:00"
    promotion = lineage["promotion"]
    assert promotion["replaced_kept_as"] == kept.name and promotion["promoted_at"]
    assert promotion["data"]["folders"][0]["dir"] == str(holdout_folder) and promotion["data"]["images"] == 50
    assert promotion["figures"]["new"]["sensitivity"] > promotion["figures"]["current"]["sensitivity"] == 0.0
    assert promotion["figures"]["auroc_difference"]["p_b_lower"] > 0.05
    assert lineage["data_fingerprints"] == json.loads((trained_bundle / "model.json").read_text())["lineage"][
        "data_fingerprints"]
    assert not list(tmp_path.glob(".production.partial-*"))
    assert "Infinity" not in (current / "model.json").read_text()  # strict JSON, though DeLong's z is infinite here
    again = _promote(_constant_bundle(tmp_path / "worse", threshold=0.6), current, holdout_folder)
    assert again.exit_code == EXIT_FATAL and load_bundle(current).model_id == promoted.model_id


def test_promotion_refuses_the_same_weights_and_the_training_data(trained_bundle, tmp_path):
    current = _constant_bundle(tmp_path / "production", threshold=0.6)
    same = _promote(current, current, trained_bundle.parent / "train")
    assert same.exit_code == EXIT_FATAL and "same weights" in same.output
    seen = _promote(trained_bundle, current, trained_bundle.parent / "train")
    assert seen.exit_code == EXIT_FATAL and "trained on" in seen.output
    assert load_bundle(current).model_id != load_bundle(trained_bundle).model_id


def test_init_from_refuses_another_architecture_or_input_size(trained_bundle, tmp_path):
    out = tmp_path / "continued"
    result = CliRunner().invoke(cli, ["fit", str(trained_bundle.parent / "train"), "--out", str(out), "--init-from",
                                      str(trained_bundle), "--arch", "compact", "--image-size", "96"])
    assert result.exit_code == EXIT_FATAL
    assert "architecture is 'seed' in that model but 'compact'" in result.output
    assert "image_size is 64 in that model but 96" in result.output and not out.exists()


def test_init_from_continues_training_without_copies_of_the_excluded_folder(trained_bundle, holdout_folder,
                                                                             tmp_path):
    data = Path(shutil.copytree(trained_bundle.parent / "train", tmp_path / "new_data"))
    shutil.copy(holdout_folder / "yes" / "yes300.png", data / "yes" / "planted_exact.png")
    shutil.copy(holdout_folder / "no" / "no301.png", data / "no" / "planted_exact.png")
    reencoded = cv2.imread(str(holdout_folder / "yes" / "yes302.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(data / "yes" / "planted_jpeg.jpg"), reencoded, [cv2.IMWRITE_JPEG_QUALITY, 85])
    out = tmp_path / "continued"
    result = CliRunner().invoke(cli, ["fit", str(data), "--out", str(out), "--init-from", str(trained_bundle),
                                      "--exclude", str(holdout_folder), "--epochs", "1", "--workers", "1"])
    # A one-epoch fit on 60 images is below the quality floor: the bundle is written, and fit says so.
    assert result.exit_code == EXIT_BELOW_FLOOR, result.output + repr(result.exception)
    card = json.loads((out / "model.json").read_text())
    parent = load_bundle(trained_bundle)
    assert (card["architecture"], card["input_size"]) == ("seed", 64)  # taken from the parent
    lineage = card["lineage"]
    assert lineage["parent_model_id"] == parent.model_id and lineage["parent_created"] == parent.card.created
    assert lineage["excluded_images"] == 3 and card["data"]["excluded_copies_removed"] == 3
    assert lineage["excluded_dirs"] == [{"dir": str(holdout_folder), "files": 50,
                                         "sha256": lineage["excluded_dirs"][0]["sha256"]}]
    assert lineage["data_fingerprints"][0]["files"] == 63 and card["data"]["images_used"] == 60
    assert lineage["data_fingerprints"][0]["sha256"] != parent.card.lineage["data_fingerprints"][0]["sha256"]
    seen = card["fingerprints"]  # the images it has seen: its own training and validation images, and its parent's
    split = card["data"]["split_sizes"]
    inherited = len(parent.training_fingerprints)
    assert seen["parent"] == {"model_id": parent.model_id, "images": inherited}
    assert seen["images"] == split["train"] + split["validation"] + inherited


def test_the_table_legend_reads_well_whatever_the_folders_are_called():
    legend = models_legend(Path("/opt/mriscan/models/current"), Path("/opt/mriscan/models/new"))
    assert legend == ("A: the model in service (/opt/mriscan/models/current)\n"
                      "B: the new model (/opt/mriscan/models/new)")
    assert "current current" not in legend
