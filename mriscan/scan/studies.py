"""One answer per study: the slice rows of each NIfTI volume and of each DICOM study, summarised in one row.

A study is a NIfTI file (its path) or a DICOM study (its StudyInstanceUID, over every file and
series of it). Its answer comes from its slices by one rule, :class:`StudyRule`:

* the **score** is the highest probability of its usable slices (those not flagged ``low_quality``,
  such as slices outside the head; all readable slices when none is usable): the mean of the
  ``top_k`` highest, with ``top_k`` = :data:`DEFAULT_TOP_K` = 1;
* the study is ``tumor`` when the score is at or above ``threshold``, the model's slice threshold,
  i.e. when one of its slices is ``tumor``. The slice threshold was chosen on validation for the
  model's target sensitivity (``--target-recall``), and a study keeps that sensitivity for every
  tumour the model finds on one slice; ``near_threshold`` uses the slice ``review_threshold`` in
  the same way.

Why the maximum: on held-out studies (``benchmarks/study_rule.py``, docs/volumes.md) it had the
highest sensitivity of the rules measured (the mean of the top 3, 5 or 10, the 2nd or 3rd highest,
the share of slices called), and no rule gave useful specificity: those rules trade tumour studies
for a little specificity at levels no site could use.

The study is flagged (``flag_reason``, ``;``-separated) when it is ``near_threshold``, when a slice
could not be read (``unreadable_slices``: an unread slice may be the one that shows the tumour),
when it is ``no_tumor`` although a usable slice is ``tumor`` (``tumor_slice``: only with a ``top_k``
above 1), or when it has no usable slice (``low_quality``). No patient identifier is read or
written: only paths and UIDs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mriscan.errors import OutputError
from mriscan.io.atomic import replace_file
from mriscan.io.discover import VOLUME_SUFFIXES
from mriscan.scan.results import Row, row_key

STUDY_COLUMNS = (
    "study", "kind", "series", "files", "slices", "usable_slices", "flagged_slices", "unreadable_slices",
    "tumor_slices", "max_probability", "max_path", "max_plane", "max_frame", "score", "prediction", "flagged",
    "flag_reason", "flag_detail", "threshold", "review_threshold", "rule", "model_id", "error",
)
STUDY_FLAG_CODES = {
    "near_threshold": "predicted no_tumor, but with a score at or above the review threshold",
    "unreadable_slices": "a slice or file of the study could not be read",
    "tumor_slice": "predicted no_tumor, but a usable slice is predicted tumor",
    "low_quality": "no slice of the study is usable (all low quality)",
}
DEFAULT_TOP_K = 1
"""The study score is the mean of this many highest usable slice probabilities: 1, the maximum (see above)."""


@dataclass(frozen=True)
class StudyRule:
    """How slice probabilities become one study answer (see the module docstring)."""

    threshold: float
    review_threshold: float
    top_k: int = DEFAULT_TOP_K

    @property
    def description(self) -> str:
        if self.top_k == 1:
            return "highest usable slice probability"
        return f"mean of the top {self.top_k} usable slice probabilities"

    def score(self, probabilities: Sequence[float]) -> float:
        """The mean of the ``top_k`` highest probabilities (of all of them when there are fewer).

        Examples
        --------
        >>> StudyRule(0.5, 0.3).score([0.1, 0.9, 0.2]), StudyRule(0.5, 0.3, top_k=3).score([0.1, 0.9, 0.8, 0.7])
        (0.9, 0.8)
        """
        top = sorted(probabilities, reverse=True)[: self.top_k]
        return round(sum(top) / len(top), 12)


def study_of(row: Row) -> tuple[str, str] | None:
    """The study a slice row belongs to, as (kind, key): ("nifti", path) or ("dicom", StudyInstanceUID).

    Plain 2-D images, and unreadable DICOM files whose StudyInstanceUID could not be read, belong to none.

    Examples
    --------
    >>> study_of({"path": "a/t1.nii.gz", "plane": "axial"}), study_of({"path": "b.png", "plane": ""})
    (('nifti', 'a/t1.nii.gz'), None)
    """
    if row.get("plane") or row["path"].lower().endswith(VOLUME_SUFFIXES):
        return "nifti", row["path"]
    uid = row.get("study_instance_uid", "")
    return ("dicom", uid) if uid else None


def summarise_studies(rows: Iterable[Row], rule: StudyRule, model_id: str) -> list[Row]:
    """One row per study found in ``rows`` (slice rows of a scan), sorted by kind and study."""
    studies: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        key = study_of(row)
        if key is not None:
            studies.setdefault(key, []).append(row)
    return [_study_row(kind, study, sorted(members, key=row_key), rule, model_id)
            for (kind, study), members in sorted(studies.items())]


def scored_rows(rows: Iterable[Row]) -> list[Row]:
    """The slice rows a study's score comes from: the usable ones (readable, not ``low_quality``), or
    every readable one when none is usable.

    Examples
    --------
    >>> rows = [{"probability": "0.9", "flag_reason": "low_quality"}, {"probability": "0.2", "flag_reason": ""},
    ...         {"probability": "", "flag_reason": "unreadable"}]
    >>> [row["probability"] for row in scored_rows(rows)], len(scored_rows(rows[:1]))
    (['0.2'], 1)
    """
    readable = [row for row in rows if row["probability"]]
    return [row for row in readable if _usable(row)] or readable


def _usable(row: Row) -> bool:
    return "low_quality" not in row["flag_reason"].split(";")


def _study_row(kind: str, study: str, rows: list[Row], rule: StudyRule, model_id: str) -> Row:
    readable = [row for row in rows if row["probability"]]
    usable = [row for row in readable if _usable(row)]
    scored = scored_rows(rows)
    unreadable = [row for row in rows if row["error"]]
    series = sorted({row.get("series_instance_uid", "") for row in rows} - {""})
    row = {
        "study": study, "kind": kind, "series": ";".join(series), "files": str(len({r["path"] for r in rows})),
        "slices": str(len(rows)), "usable_slices": str(len(usable)),
        "flagged_slices": str(sum(r["flagged"] == "true" for r in rows)), "unreadable_slices": str(len(unreadable)),
        "tumor_slices": str(sum(r["prediction"] == "tumor" for r in scored)),
        "threshold": f"{rule.threshold:.6g}", "review_threshold": f"{rule.review_threshold:.6g}",
        "rule": rule.description, "model_id": model_id, "error": unreadable[0]["error"] if unreadable else "",
    }
    if not readable:
        return {**row, "max_probability": "", "max_path": "", "max_plane": "", "max_frame": "", "score": "",
                "prediction": "", "flagged": "true", "flag_reason": "unreadable_slices",
                "flag_detail": f"{len(unreadable)} of {len(rows)} slices or files could not be read"}
    top = max(scored, key=lambda r: float(r["probability"]))
    score = rule.score([float(r["probability"]) for r in scored])
    prediction = "tumor" if score >= rule.threshold else "no_tumor"
    codes, details = _study_flags(prediction, score, rule, len(rows), scored, unreadable)
    if not usable:
        codes.append("low_quality")
        details.append("every readable slice is low quality; the score uses them all")
    return {**row, "max_probability": top["probability"], "max_path": top["path"],
            "max_plane": top.get("plane", ""), "max_frame": top["frame"], "score": f"{score:.6f}",
            "prediction": prediction, "flagged": "true" if codes else "false",
            "flag_reason": ";".join(codes), "flag_detail": "; ".join(details)}


def _study_flags(prediction: str, score: float, rule: StudyRule, slices: int, scored: list[Row],
                 unreadable: list[Row]) -> tuple[list[str], list[str]]:
    """The study's flag codes and the same in words (``low_quality`` is added by the caller)."""
    codes: list[str] = []
    details: list[str] = []
    if prediction == "no_tumor" and score >= rule.review_threshold:
        codes.append("near_threshold")
        details.append(f"score {score:.3f} in the review band [{rule.review_threshold:.3f}, {rule.threshold:.3f})")
    if unreadable:
        codes.append("unreadable_slices")
        details.append(f"{len(unreadable)} of {slices} slices or files could not be read")
    tumour_slices = [row for row in scored if row["prediction"] == "tumor"]
    if prediction == "no_tumor" and tumour_slices:
        codes.append("tumor_slice")
        details.append(f"{len(tumour_slices)} slice(s) predicted tumor, e.g. {_where(tumour_slices[0])}")
    return codes, details


def _where(row: Row) -> str:
    plane = f" {row['plane']}" if row.get("plane") else ""
    frame = f"{plane} slice {row['frame']}" if row["frame"] else ""
    return f"{row['path']}{frame} (p={float(row['probability']):.3f})"


def check_study_output(path: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a --studies target that cannot be written, before any work (as for --out)."""
    if path.is_dir():
        raise OutputError(f"--studies {path} is a folder; give a CSV file name")
    if path.exists() and not (resume or overwrite):
        raise OutputError(f"{path} already exists; pass --resume to continue it or --overwrite to replace it")
    if not path.parent.is_dir():
        raise OutputError(f"the folder of --studies, {path.parent}, does not exist; create it first")


def write_studies(path: Path, studies: Iterable[Row]) -> None:
    """Write the study CSV atomically: readers see the previous file or the complete new one."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=STUDY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(studies)
    try:
        replace_file(path, text.getvalue().encode("utf-8"), sync=True)
    except OSError as error:
        raise OutputError(f"cannot write --studies {path} ({error.strerror or error}); choose another path") from error
