"""The quality floor: what a model card must show before its answers deserve trust.

``fit`` writes the warnings into the card (``quality_warnings``) and exits with its own code when
there are any; ``scan`` and ``explain`` print them at the start of every run and record them in
the scan's run record. The rules are read from the card's own figures, so a bundle written before
the floor existed is judged the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from mriscan.model.card import ModelCard

MIN_VALIDATION_AUROC = 0.85
"""Below this validation AUROC the model separates tumours from healthy slices too poorly to triage."""
MIN_VALIDATION_IMAGES = 50
"""Thresholds chosen on fewer validation images than this are too uncertain to rely on."""


def quality_warnings(card: ModelCard) -> list[str]:
    """The reasons the model of ``card`` is below the floor; empty when it passes."""
    validation = (card.metrics or {}).get("validation")
    if not isinstance(validation, Mapping):
        return ["the model card has no validation metrics: the model's quality is unknown"]
    warnings = []
    auroc, images = validation.get("auroc"), validation.get("n")
    if auroc is None or auroc < MIN_VALIDATION_AUROC:
        shown = "unknown" if auroc is None else f"{auroc:.3f}"
        warnings.append(f"validation AUROC {shown} is below the floor of {MIN_VALIDATION_AUROC}")
    if images is None or images < MIN_VALIDATION_IMAGES:
        warnings.append(f"the thresholds were chosen on {images} validation images "
                        f"(fewer than {MIN_VALIDATION_IMAGES}): they are unreliable")
    if card.review_threshold >= card.threshold:
        warnings.append("the review band is empty (review threshold = threshold): no near_threshold "
                        "flag will ever be raised")
    if card.threshold_warning:
        warnings.append(str(card.threshold_warning))
    return warnings
