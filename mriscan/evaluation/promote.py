"""``mriscan promote``: replace the model in service only when the new one is not worse.

The rule (sensitivity first), with the current model as A and the new one as B, on the same
labelled images the site chose for the decision:

1. the new sensitivity, at its own threshold, is at most ``sensitivity_tolerance`` (0.01,
   absolute) below the current one's;
2. on the tumour images, the new model does not miss significantly more tumours than the current
   one catches (one-sided McNemar, exact binomial for few discordant tumours, p >= alpha = 0.05);
3. its AUROC is not significantly lower (one-sided DeLong test, p >= alpha = 0.05).

When the rule holds, the current bundle is moved aside as ``<CURRENT>.v<N>-<its model_id[:12]>``
(never overwritten) and a copy of the new bundle takes its place atomically, its card recording
the lineage: the replaced model, the date, the decision data's fingerprints and the figures.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from mriscan.errors import DataLayoutError, ModelBundleError, PromotionRefused
from mriscan.evaluation.compare import Comparison, compare_models, comparison_table
from mriscan.evaluation.evaluate import LabelledData
from mriscan.evaluation.paired_tests import DelongResult, McnemarResult
from mriscan.io.atomic import write_folder_atomically
from mriscan.io.hashing import file_sha256
from mriscan.model.bundle import ModelBundle, load_bundle, pinned_files, write_card
from mriscan.model.card import ModelCard

SENSITIVITY_TOLERANCE = 0.01
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class PromotionRule:
    """How much worse a new model may look before it is refused."""

    sensitivity_tolerance: float = SENSITIVITY_TOLERANCE
    alpha: float = SIGNIFICANCE

    def describe(self) -> str:
        """The rule in one sentence (recorded in the card)."""
        return (f"sensitivity not lower by more than {self.sensitivity_tolerance} (absolute); tumours missed not "
                f"significantly more (one-sided McNemar p >= {self.alpha}); AUROC not significantly lower "
                f"(one-sided DeLong p >= {self.alpha})")


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the rule holds, and why not when it does not."""

    accepted: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Promotion:
    """A promotion that happened."""

    comparison: Comparison
    kept_as: Path
    card: ModelCard


def decide(sensitivity_current: float, sensitivity_new: float, tumours: McnemarResult, auroc: DelongResult,
           rule: PromotionRule = PromotionRule()) -> PromotionDecision:
    """Apply the promotion rule (current = A, new = B in both tests).

    Examples
    --------
    >>> tumours = McnemarResult(only_a_correct=1, only_b_correct=0, p_two_sided=1.0, p_b_worse=0.5, method="")
    >>> auroc = DelongResult(0.9, 0.91, 0.01, 0.02, 0.5, 0.6, 0.7, (-0.03, 0.05))
    >>> decide(0.96, 0.95, tumours, auroc).accepted, decide(0.96, 0.94, tumours, auroc).accepted
    (True, False)
    """
    reasons = []
    if sensitivity_new < sensitivity_current - rule.sensitivity_tolerance - 1e-9:
        reasons.append(f"sensitivity {sensitivity_new:.4f} is {sensitivity_current - sensitivity_new:.4f} below the "
                       f"current {sensitivity_current:.4f} (tolerance {rule.sensitivity_tolerance})")
    if tumours.p_b_worse < rule.alpha:
        reasons.append(f"it misses {tumours.only_a_correct} tumours the current model finds and finds only "
                       f"{tumours.only_b_correct} it misses (one-sided McNemar p = {tumours.p_b_worse:.3g} "
                       f"< {rule.alpha})")
    if auroc.p_b_lower < rule.alpha:
        reasons.append(f"AUROC {auroc.auroc_b:.4f} is significantly lower than {auroc.auroc_a:.4f} "
                       f"(one-sided DeLong p = {auroc.p_b_lower:.3g} < {rule.alpha})")
    return PromotionDecision(accepted=not reasons, reasons=tuple(reasons))


def models_legend(current_dir: Path, new_dir: Path) -> str:
    """What A and B stand for in promote's table, whatever the folders are called.

    Examples
    --------
    >>> print(models_legend(Path("models/current"), Path("models/new")))
    A: the model in service (models/current)
    B: the new model (models/new)
    """
    return f"A: the model in service ({current_dir})\nB: the new model ({new_dir})"


def promote_model(new_dir: Path, current_dir: Path, data: LabelledData, *, rule: PromotionRule = PromotionRule(),
                  seed: int = 2021, resamples: int = 1000) -> Promotion:
    """Compare NEW with CURRENT on ``data`` and, if the rule holds, put NEW in CURRENT's place.

    Raises
    ------
    PromotionRefused
        When the rule does not hold (the message carries the comparison), when both are the same
        weights, or when the decision data is the new model's own training data.
    """
    new, current = load_bundle(new_dir), load_bundle(current_dir)
    if new.model_id == current.model_id:
        raise PromotionRefused(f"{new_dir} holds the same weights as {current_dir} (model_id "
                               f"{new.model_id[:12]}); nothing to promote")
    comparison = compare_models(current, new, data, seed=seed, resamples=resamples)
    _check_unseen(new, comparison)
    decision = _decision(comparison, rule)
    if not decision.accepted:
        raise PromotionRefused(
            f"kept {current_dir}; {new_dir} was not promoted because\n"
            + "".join(f"  - {reason}\n" for reason in decision.reasons)
            + f"\n{models_legend(current_dir, new_dir)}\n{comparison_table(comparison)}\n\n"
            + "".join(f"{line}\n" for line in comparison.training_copies.warnings())
            + f"Rule: {rule.describe()}"
        )
    kept_as = current.directory.with_name(_version_name(current))
    card = _promoted_card(new, current, comparison, rule, kept_as)
    _install(new, card, current.directory, kept_as)
    return Promotion(comparison=comparison, kept_as=kept_as, card=card)


def _decision(comparison: Comparison, rule: PromotionRule) -> PromotionDecision:
    sensitivity_current = comparison.metrics_a["sensitivity"]
    sensitivity_new = comparison.metrics_b["sensitivity"]
    if comparison.auroc is None or sensitivity_current is None or sensitivity_new is None:
        raise DataLayoutError(
            f"promotion needs at least two tumour and two no-tumour images to decide on; the data holds "
            f"{comparison.data['tumor']} tumor and {comparison.data['no_tumor']} no_tumor images"
        )
    return decide(sensitivity_current, sensitivity_new, comparison.mcnemar_tumours, comparison.auroc, rule)


def _check_unseen(new: ModelBundle, comparison: Comparison) -> None:
    """Refuse a decision on the very folders the new model was trained on (its card's fingerprints)."""
    trained_on = new.card.trained_on_fingerprints()
    seen = [f["dir"] for f in comparison.data["folders"] if f["files"] and f["sha256"] in trained_on]
    if seen:
        raise PromotionRefused(
            f"{', '.join(seen)} is the data {new.directory} was trained on (same fingerprint); decide on labelled "
            "images neither model has seen, e.g. a folder that fit was given with --exclude"
        )


def _version_name(current: ModelBundle) -> str:
    """``<name>.v<N>-<model_id[:12]>``, N one more than any earlier version kept beside it."""
    name = current.directory.name
    pattern = re.compile(rf"^{re.escape(name)}\.v(\d+)-")
    versions = [int(m.group(1)) for p in current.directory.parent.iterdir() if (m := pattern.match(p.name))]
    return f"{name}.v{max(versions, default=0) + 1}-{current.model_id[:12]}"


def _promoted_card(new: ModelBundle, current: ModelBundle, comparison: Comparison, rule: PromotionRule,
                   kept_as: Path) -> ModelCard:
    lineage = dict(new.card.lineage or {})
    trained_from = lineage.get("parent_model_id")
    if trained_from and trained_from != current.model_id:
        lineage["trained_from_model_id"] = trained_from
    lineage.update(parent_model_id=current.model_id, parent_created=current.card.created)
    lineage["promotion"] = {
        "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "replaced_model_id": current.model_id,
        "replaced_kept_as": kept_as.name,
        "rule": rule.describe(),
        "data": comparison.data,
        "figures": {"current": comparison.metrics_a, "new": comparison.metrics_b,
                    "auroc_difference": comparison.auroc.as_record() if comparison.auroc else None,
                    "mcnemar_tumours_found": asdict(comparison.mcnemar_tumours),
                    "mcnemar_at_thresholds": asdict(comparison.mcnemar_all)},
    }
    return replace(new.card, lineage=lineage)


def _install(new: ModelBundle, card: ModelCard, current_dir: Path, kept_as: Path) -> None:
    """Copy NEW (with its new card) into CURRENT's place; CURRENT moves to ``kept_as``."""

    def write(staging: Path) -> None:
        shutil.copytree(new.directory, staging, dirs_exist_ok=True)
        for name, sha256 in pinned_files(card).items():
            if file_sha256(staging / name) != sha256:
                raise ModelBundleError(f"copying {new.directory / name} changed its bytes; nothing was replaced")
        write_card(card, staging)

    write_folder_atomically(current_dir, write, overwrite=True, kind="bundle", keep_old_as=kept_as.name)
