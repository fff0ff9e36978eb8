"""The plan of a synthetic dataset: which image gets which label, plane, contrast, slice and seed.

The whole plan is drawn up front from the run's seed, and each job gets its own seed spawned
from it (``numpy.random.SeedSequence``), so an image depends only on the run's seed and its
position in the plan, never on how jobs are spread over workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

STEM_PREFIX = "synth_"


@dataclass(frozen=True)
class Output:
    """One image file a job writes: its file stem and class folder (``"yes"`` or ``"no"``)."""

    stem: str
    label: str


@dataclass(frozen=True)
class Job:
    """One rendering: a slice, and the image(s) made from it.

    Attributes
    ----------
    seed : the job's own seed (recorded in the manifest; both twins of a pair share it).
    origin : ``"template"`` or the healthy source's path relative to its folder.
    plane : template plane, or ``""`` for a healthy source (unknown).
    contrast : template contrast, or the contrast lesions are drawn in on a healthy source.
    slice_index : template slice index, or None.
    source : path of the healthy source image, or None.
    outputs : one output, or a ``no``/``yes`` pair.
    pair_id : shared by the twins of a pair, ``""`` otherwise.
    """

    seed: int
    origin: str
    plane: str
    contrast: str
    slice_index: int | None
    source: Path | None
    outputs: tuple[Output, ...]
    pair_id: str = ""


def _job_seeds(seed: int, count: int) -> tuple[np.random.Generator, list[int]]:
    """Return the plan's own generator and one 64-bit seed per job, all spawned from ``seed``."""
    plan_sequence, jobs_sequence = np.random.SeedSequence(seed).spawn(2)
    seeds = [int(child.generate_state(1, dtype=np.uint64)[0]) for child in jobs_sequence.spawn(count)]
    return np.random.default_rng(plan_sequence), seeds


def _outputs(count: int, n: int, lesion_fraction: float, paired: bool,
             rng: np.random.Generator) -> list[tuple[tuple[Output, ...], str]]:
    """Name each job's output file(s): an exact share of tumour images in random order, or pairs."""
    if paired:
        return [((Output(f"{STEM_PREFIX}{2 * j:06d}", "no"), Output(f"{STEM_PREFIX}{2 * j + 1:06d}", "yes")),
                 f"pair_{j:06d}") for j in range(count)]
    tumours = int(round(n * lesion_fraction))
    labels = rng.permutation(np.array(["yes"] * tumours + ["no"] * (n - tumours)))
    return [((Output(f"{STEM_PREFIX}{j:06d}", str(labels[j])),), "") for j in range(count)]


class _Place(NamedTuple):
    """Where a job's slice comes from."""

    origin: str
    plane: str
    slice_index: int | None
    source: Path | None


def _template_places(rng: np.random.Generator, order: np.ndarray, planes: tuple[str, ...],
                     positions: dict[str, tuple[int, ...]]) -> list[_Place]:
    """Cycle through the planes (in shuffled order) and draw a usable slice of each."""
    places = []
    for i in order:
        plane = planes[i % len(planes)]
        places.append(_Place("template", plane, int(rng.choice(positions[plane])), None))
    return places


def _source_places(rng: np.random.Generator, count: int, sources: list[tuple[str, Path]]) -> list[_Place]:
    """Use every healthy source once, in random order, before any is used again."""
    rounds = -(-count // len(sources))
    picks = np.concatenate([rng.permutation(len(sources)) for _ in range(rounds)])[:count]
    return [_Place(sources[k][0], "", None, sources[k][1]) for k in picks]


def plan_jobs(n: int, seed: int, planes: tuple[str, ...], contrasts: tuple[str, ...], lesion_fraction: float,
              paired: bool, positions: dict[str, tuple[int, ...]] | None = None,
              sources: list[tuple[str, Path]] | None = None) -> list[Job]:
    """Draw the plan of a dataset of ``n`` images.

    Planes and contrasts cycle (so every one appears as soon as there are enough images) and are
    then shuffled; labels are shuffled independently of them.

    Parameters
    ----------
    n : number of images (twice the number of jobs when ``paired``).
    seed : the run's seed.
    planes, contrasts : the choices to cycle through.
    lesion_fraction : share of tumour images when not paired.
    paired : make ``n // 2`` healthy/tumour twins.
    positions : usable slice indices per plane (template mode).
    sources : ``(name, path)`` of healthy images (healthy-source mode; planes are then unused).

    Returns
    -------
    The jobs, in file-name order.
    """
    count = n // 2 if paired else n
    rng, seeds = _job_seeds(seed, count)
    order = rng.permutation(count)
    places = _source_places(rng, count, sources) if sources is not None else \
        _template_places(rng, order, planes, positions or {})
    named = _outputs(count, n, lesion_fraction, paired, rng)
    return [Job(seed=seeds[j], origin=places[j].origin, plane=places[j].plane,
                contrast=contrasts[order[j] % len(contrasts)], slice_index=places[j].slice_index,
                source=places[j].source, outputs=named[j][0], pair_id=named[j][1]) for j in range(count)]
