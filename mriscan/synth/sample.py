"""The repository's small sample data set, made entirely by this package.

Layout::

    train/yes, train/no, train/masks, train/manifest.csv   a labelled set (see ``generate``)
    incoming/*.jpg|png, incoming/nested/...                 unlabelled slices, as a scan would meet them
    incoming_truth.csv                                      file (relative to incoming/), label
    README.md                                               what the images are and how to remake them
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np

from mriscan.io.atomic import staged_output_folder
from mriscan.synth.generate import generate_dataset
from mriscan.synth.output import write_image

TRAIN_IMAGES = 48
INCOMING_IMAGES = 12
SAMPLE_SIZE_RANGE = (144, 224)
# Incoming files 10-12 go in a sub-folder; 4 is PNG and 11 has an upper-case suffix, because
# real folders mix formats and spellings.
_NESTED_FROM = 10
_SUFFIXES = {4: ".png", 11: ".PNG"}

_README = """# Sample data (synthetic)

Every image here is **synthetic**. None comes from a patient or from any public MRI collection.
They were made by `mriscan.synth` with seed {seed}:

- healthy anatomy is the MNI152 2009a symmetric template shipped inside nilearn's wheel (an
  average of 152 adult brains, Fonov et al., NeuroImage 2011; copyright 1993-2009 Louis Collins,
  McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University), cut into
  axial, coronal and sagittal slices;
- T1, contrast-enhanced T1, T2 and FLAIR contrasts are rendered from its grey/white matter and
  fluid maps; skull, scalp and neck are drawn around the brain;
- tumour-like lesions (mass, optional necrotic core and enhancing rim, oedema, mass effect) are
  drawn inside the brain of the `yes` images; `train/masks/` holds each lesion's mass (0/255);
- field of view, rotation, size, bias field, noise, blur and intensity scaling vary like scanners do.

They are meant for trying the tool and for tests, not for judging a model: a model must be
evaluated on real scans.

## Layout

- `train/yes/`, `train/no/`: {train} labelled images (JPEG), half with a lesion;
  `train/masks/`: lesion masks (PNG, same stem as the `yes` image);
  `train/manifest.csv`: file, label, origin, plane, contrast, slice_index, pair_id, lesion bounding
  box x0, y0, x1, y1 (x1, y1 exclusive), seed.
- `incoming/`: {incoming} unlabelled images, some in `incoming/nested/`, mixed JPEG/PNG and suffix case.
- `incoming_truth.csv`: the true label (`yes` tumour, `no` healthy) of each incoming file.

## Regenerate

From the repository root, with the optional extra installed (`pip install -e '.[synth]'`):

    python - <<'END'
    from pathlib import Path
    from mriscan.synth.sample import make_sample_data
    make_sample_data(Path("sample_data"), seed={seed}, overwrite=True)
    END

The same seed gives the same files, byte for byte, with the same library versions.
"""


def _incoming_name(position: int, source: Path) -> str:
    """Return the incoming file name (relative to ``incoming/``) of the ``position``-th image (1-based)."""
    folder = "nested/" if position >= _NESTED_FROM else ""
    return f"{folder}scan_{position:02d}{_SUFFIXES.get(position, source.suffix)}"


def _make_incoming(folder: Path, seed: int) -> None:
    """Write the unlabelled incoming images and their truth file into ``folder``."""
    build = folder / ".incoming-build"
    generate_dataset(build, INCOMING_IMAGES, seed, image_format="jpg", size_range=SAMPLE_SIZE_RANGE, workers=1)
    with (build / "manifest.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    (folder / "incoming" / "nested").mkdir(parents=True)
    truth = []
    for position, row in enumerate(rows, start=1):
        source = build / row["file"]
        name = _incoming_name(position, source)
        write_image(folder / "incoming" / name, cv2.imread(str(source), cv2.IMREAD_GRAYSCALE))
        truth.append((name, row["label"]))
    shutil.rmtree(build)
    with (folder / "incoming_truth.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("file", "label"))
        writer.writerows(truth)


def make_sample_data(out_dir: Path, seed: int = 2021, *, overwrite: bool = False) -> Path:
    """Write the small sample data set (see the module docstring for its layout).

    Parameters
    ----------
    out_dir : new or empty folder (the repository's ``sample_data``).
    seed : the seed everything is drawn from.
    overwrite : replace ``out_dir`` if it is not empty.

    Returns
    -------
    ``out_dir``.
    """
    train_seed, incoming_seed = (int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(2))
    with staged_output_folder(Path(out_dir), overwrite=overwrite, kind="sample data") as staged:
        staging = staged.path
        generate_dataset(staging / "train", TRAIN_IMAGES, train_seed, image_format="jpg",
                         size_range=SAMPLE_SIZE_RANGE, workers=1)
        _make_incoming(staging, incoming_seed)
        (staging / "README.md").write_text(
            _README.format(seed=seed, train=TRAIN_IMAGES, incoming=INCOMING_IMAGES), encoding="utf-8")
    return Path(out_dir)
