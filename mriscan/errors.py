"""The one exception hierarchy of mriscan.

Every error a user can meet is a :class:`MriscanError` with a message that says what file or
setting was wrong and what to do. Only ``cli.py`` turns these into exit codes.
"""

from __future__ import annotations


class MriscanError(Exception):
    """Base class of every error mriscan raises on purpose."""


class UnreadableImageError(MriscanError):
    """A candidate file could not be decoded into an image (recorded as a CSV row, never fatal)."""


class ImageTooLargeError(UnreadableImageError):
    """An image declares more pixels than the configured limit (a decompression bomb guard)."""


class ModelBundleError(MriscanError):
    """A model bundle is missing, damaged, unsafe or does not match its card."""


class DataLayoutError(MriscanError):
    """A training folder does not have the expected class sub-folders."""


class OutputError(MriscanError):
    """An output location exists, is locked or cannot be written."""


class TrainingError(MriscanError):
    """Training cannot proceed (too few images, a class missing from a split, ...)."""


class InputFolderError(MriscanError):
    """The folder to scan does not exist or is not a folder."""


class NoImagesError(InputFolderError):
    """The folder to scan holds no candidate image (an unmounted share, an export that did not run)."""


class SynthError(MriscanError):
    """Synthetic data cannot be made (optional extra missing, bad settings, output not empty)."""


class PromotionRefused(MriscanError):
    """``mriscan promote`` kept the current model: the new one is, or may be, worse (or is the same)."""


class ClusterError(MriscanError):
    """``--scheduler`` cannot be used: Dask is not installed, the scheduler is unreachable or a worker failed."""


class ExplainError(MriscanError):
    """An explanation cannot be computed for this model, image or setting."""
