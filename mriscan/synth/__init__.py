"""Synthetic brain MRI: healthy slices from the MNI152 template, lesions drawn where we choose.

Modules, in the order data flows through them:

- ``anatomy``: the template (from nilearn's wheel, read with nibabel) cut into tissue slices;
- ``head``: skull, scalp and neck drawn around the brain;
- ``contrast``: T1, T1ce, T2 and FLAIR rendered from tissue fractions;
- ``scanner``: framing (field of view, rotation, size) and acquisition (bias, noise, blur, gamma);
- ``lesion``: tumour-like lesions with masks, for template slices and real healthy slices alike;
- ``healthy``: real healthy slices as a canvas (brain mask estimate);
- ``render``: one example end to end; ``plan``: the seeds and choices of a run;
- ``generate``: the parallel run and its output folder; ``sample``: the repository's sample data.
"""

from mriscan.synth.anatomy import PLANES
from mriscan.synth.contrast import CONTRASTS
from mriscan.synth.generate import SynthSummary, generate_dataset
from mriscan.synth.lesion import MASS_LABEL, OEDEMA_LABEL, insert_lesion

__all__ = ["CONTRASTS", "MASS_LABEL", "OEDEMA_LABEL", "PLANES", "SynthSummary", "generate_dataset",
           "insert_lesion"]
