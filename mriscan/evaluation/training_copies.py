"""Images that copy what a model was trained or validated on: counted, and left out of the figures.

A model scores the images it has seen far better than new ones, so figures measured on them
overstate it, silently. ``evaluate``, ``compare`` and ``promote`` therefore count, for each model,
the images that are exact or near copies of its training and validation images (the fingerprints
fit keeps in the bundle, ``mriscan/dedup/fingerprints.py``), and by default measure on the others
only. A bundle without fingerprints (made before fit kept them) is measured on every image, with a
warning that copies of its training images cannot be detected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mriscan.errors import DataLayoutError
from mriscan.evaluation.evaluate import SharedPredictions
from mriscan.model.bundle import ModelBundle

KEEP_OPTION = "--include-training-copies"


@dataclass(frozen=True)
class ModelCopies:
    """How many images copy one model's training images: ``exact`` and ``near`` are None without fingerprints."""

    role: str  # how the report names the model: "this model", "model A"
    model_id: str
    exact: int | None
    near: int | None

    @property
    def recorded(self) -> bool:
        """True when the model's bundle keeps fingerprints of its training images."""
        return self.exact is not None


@dataclass(frozen=True)
class TrainingCopies:
    """What the models' fingerprints say of the evaluated images, and what was done with the copies.

    ``images`` counts the readable images checked; ``left_out`` those left out of the figures
    (copies of any model's training images; 0 when ``kept``, i.e. with --include-training-copies).
    """

    images: int
    models: tuple[ModelCopies, ...]
    left_out: int
    kept: bool

    def sentences(self) -> list[str]:
        """One sentence per model, for the report.

        Examples
        --------
        >>> copies = TrainingCopies(50, (ModelCopies("this model", "ab" * 32, 3, 2),), left_out=5, kept=False)
        >>> print(copies.sentences()[0].replace("; ", ";\\n"))
        3 of 50 images are exact copies and 2 near copies of this model's training images;
        left out of the figures (--include-training-copies to keep them)
        """
        return [self._sentence(model) for model in self.models]

    def warnings(self) -> list[str]:
        """The sentences a person must hear: copies found, or a model whose copies cannot be detected."""
        return [self._sentence(model) for model in self.models if not model.recorded or model.exact or model.near]

    def _sentence(self, model: ModelCopies) -> str:
        if not model.recorded:
            figures = (f"the figures are computed on all {self.images} images" if not self.left_out else
                       "the figures may include some")
            return (f"{model.role} ({model.model_id[:12]}) keeps no fingerprints of its training images (its bundle "
                    f"was made before fit kept them): copies of them cannot be detected, and {figures}")
        counts = self._counts(model)
        if not (model.exact or model.near):
            return counts
        if self.kept:
            return f"{counts}; kept in the figures ({KEEP_OPTION}), which overstate how it does on new images"
        return f"{counts}; left out of the figures ({KEEP_OPTION} to keep them)"

    def _counts(self, model: ModelCopies) -> str:
        return (f"{model.exact} of {self.images} images are exact copies and {model.near} near copies of "
                f"{model.role}'s training images")

    def as_record(self) -> dict[str, Any]:
        """The counts for metrics.json (and a promoted card's lineage), with the sentences."""
        return {"images_checked": self.images, "left_out": self.left_out, "kept_in_figures": self.kept,
                "models": [{"model": m.role, "model_id": m.model_id, "fingerprints": m.recorded, "exact": m.exact,
                            "near": m.near} for m in self.models],
                "summary": self.sentences()}


def set_aside_training_copies(shared: SharedPredictions, bundles: Sequence[ModelBundle], roles: Sequence[str],
                              keep: bool) -> tuple[SharedPredictions, TrainingCopies]:
    """Count the images that copy each bundle's training images; unless ``keep``, leave them out.

    Raises
    ------
    DataLayoutError
        When every image is such a copy and they are to be left out: there is nothing to measure on.
    """
    copied = np.zeros(len(shared.labels), dtype=bool)
    models = []
    for role, bundle, kinds in zip(roles, bundles, shared.training_copies, strict=True):
        if kinds is None:
            models.append(ModelCopies(role, bundle.model_id, None, None))
            continue
        models.append(ModelCopies(role, bundle.model_id, kinds.count("exact"), kinds.count("near")))
        copied |= np.array([kind != "" for kind in kinds], dtype=bool)
    copies = TrainingCopies(len(shared.labels), tuple(models), 0 if keep else int(copied.sum()), keep)
    if keep or not copied.any():
        return shared, copies
    if copied.all():
        raise DataLayoutError(
            f"all {len(copied)} readable images are copies of images the model was trained or validated on "
            f"({'; '.join(copies._counts(m) for m in copies.models if m.recorded)}), so there is nothing new to "
            "measure it on. Evaluate on labelled "
            f"images it has not seen (e.g. a folder fit was given with --exclude), or pass {KEEP_OPTION} to "
            "measure these anyway (the figures then overstate how it does on new images)")
    return _only(shared, ~copied), copies


def _only(shared: SharedPredictions, kept: np.ndarray) -> SharedPredictions:
    """``shared`` restricted to the images where ``kept`` is True."""
    rows = np.flatnonzero(kept).tolist()
    return replace(shared, labels=shared.labels[kept], probabilities=shared.probabilities[:, kept],
                   sources=shared.sources[kept], paths=tuple(shared.paths[i] for i in rows),
                   frames=tuple(shared.frames[i] for i in rows),
                   training_copies=tuple(None if kinds is None else tuple(kinds[i] for i in rows)
                                         for kinds in shared.training_copies))
