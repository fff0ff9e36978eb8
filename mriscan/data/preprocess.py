"""The one path from a decoded grey image to model input, shared by fit, scan and explain.

Sources differ in size, framing and intensity scale, and those differences alone can predict a
source's label (docs/research.md, the shortcut audit). Each step removes one of them and leaves
the anatomy, including any lesion, as it is:

1. crop to the head (the largest bright connected region), so the black frame goes;
2. rescale intensities between robust percentiles of the head, so scanner scaling goes;
3. letterbox to a square keeping the aspect ratio, so the image shape goes.

Three versions of the arithmetic exist; the model card says which one a model was trained with
(``version``; cards without it are version 1), and scan repeats it:

* version 1: the image is converted to float32, shrunk with OpenCV's area averaging, rescaled at
  full resolution, then shrunk again (area averaging by a non-integer factor takes OpenCV's slow
  generic path).
* version 2: the image stays in its decoded type (8-bit for most slices); each
  shrink first averages whole k x k blocks (OpenCV's fast integer path), then resamples the
  remaining factor (under 2) bilinearly; the head is found in 8 bits; intensities are rescaled
  after the final resize, on 150x150 values only (8-bit ones through a table). Same steps, much
  less CPU (docs/performance.md).
* version 3 (new models): version 2's arithmetic on a JPEG decoded by libjpeg at 1/2, 1/4 or 1/8
  of its size when that leaves at least ``image_size`` pixels on each side
  (:attr:`PreprocessConfig.decode_least_side`). The scaled inverse DCT decodes and shrinks in one
  step, which avoids decoding a large JPEG in colour at full size and checking its channels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import cv2
import numpy as np

MASK_SIDE = 128
VERSION = 3
"""The preprocessing arithmetic of new models (see the module docstring)."""
_NATIVE_TYPES = (np.uint8, np.uint16, np.float32)


class Arithmetic:
    """Version 1's arithmetic: the steps a preprocessing version does its own way (the module docstring).

    Each version is a small strategy object (:data:`ARITHMETIC`); the steps they share live in the
    functions of this module, and :func:`preprocess` and :func:`project_mask` run the same plan with any.
    """

    version: ClassVar[int] = 1
    name: ClassVar[str] = "crop-percentile-letterbox"

    def working_copy(self, grey: np.ndarray) -> np.ndarray:
        """The image the steps run on: float32."""
        return grey.astype(np.float32, copy=False)

    def mask_copy(self, grey: np.ndarray) -> np.ndarray:
        """The copy, ``MASK_SIDE`` pixels on its longer side, that the head and percentiles are found on."""
        return _fit_side(grey, MASK_SIDE)

    def head_mask(self, small: np.ndarray) -> np.ndarray:
        return head_mask(_min_max(small))

    def to_input(self, head: np.ndarray, low: float, high: float, size: int) -> np.ndarray:
        """The cropped head as a ``size`` square in [0, 1]: rescaled at full resolution, then letterboxed."""
        return _letterbox(_rescale(head, low, high), size)

    def decode_least_side(self, image_size: int) -> int | None:
        """The ``least_side`` images are decoded with: None, full size."""
        return None


class BlockArithmetic(Arithmetic):
    """Version 2: the decoded type kept, shrinking by whole blocks, rescaled after the final resize."""

    version: ClassVar[int] = 2
    name: ClassVar[str] = "crop-percentile-letterbox-v2"

    def working_copy(self, grey: np.ndarray) -> np.ndarray:
        """The image in its own type when OpenCV's fast paths take it (8, 16-bit, float32), else float32."""
        return grey if grey.dtype in _NATIVE_TYPES else grey.astype(np.float32, copy=False)

    def mask_copy(self, grey: np.ndarray) -> np.ndarray:
        return resize_by_blocks(grey, _letterbox_size(grey.shape, MASK_SIDE), cv2.INTER_LINEAR)

    def head_mask(self, small: np.ndarray) -> np.ndarray:
        return _head_mask_8bit(small)

    def to_input(self, head: np.ndarray, low: float, high: float, size: int) -> np.ndarray:
        shrunk = resize_by_blocks(head, _letterbox_size(head.shape, size), cv2.INTER_LINEAR)
        return _pad(_rescale(shrunk, low, high), size)


class ReducedDecodeArithmetic(BlockArithmetic):
    """Version 3: version 2's arithmetic on JPEGs decoded reduced (libjpeg's 1/2, 1/4, 1/8) when large enough."""

    version: ClassVar[int] = 3
    name: ClassVar[str] = "crop-percentile-letterbox-v3"

    def decode_least_side(self, image_size: int) -> int | None:
        return image_size


ARITHMETIC: dict[int, Arithmetic] = {a.version: a for a in (Arithmetic(), BlockArithmetic(), ReducedDecodeArithmetic())}
"""Each preprocessing version's arithmetic, by version number."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocessing path; stored in the model card so scan repeats fit exactly.

    Attributes
    ----------
    image_size : side of the square model input in pixels.
    crop_to_head : crop to the bounding box of the head before resizing.
    low_percentile, high_percentile : intensity percentiles (inside the head) mapped to 0 and 1.
    margin : fraction of the head's size kept around it when cropping.
    version : which arithmetic (module docstring); a card without it was trained with version 1.
    """

    image_size: int = 150
    crop_to_head: bool = True
    low_percentile: float = 1.0
    high_percentile: float = 99.5
    margin: float = 0.03
    version: int = VERSION

    def __post_init__(self) -> None:
        if self.version not in ARITHMETIC:
            raise ValueError(f"preprocessing version {self.version} is not known to this mriscan (it knows "
                             f"{sorted(ARITHMETIC)}); upgrade mriscan to use this model")

    @property
    def arithmetic(self) -> Arithmetic:
        """This version's way of doing the steps."""
        return ARITHMETIC[self.version]

    @property
    def decode_least_side(self) -> int | None:
        """The ``least_side`` that images are decoded with (``reader.decode_bytes``); None before version 3."""
        return self.arithmetic.decode_least_side(self.image_size)

    def to_dict(self) -> dict:
        """Return the settings as a JSON-ready dict (for the model card)."""
        return {"name": self.arithmetic.name, "mask_side": MASK_SIDE, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        """Rebuild the settings from a model card's ``preprocessing`` entry (no ``version``: version 1)."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{"version": 1, **fields})


def preprocess(pixels: np.ndarray, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Turn one decoded grey image into model input.

    The head is found, and the intensity percentiles measured, on a copy shrunk to
    ``MASK_SIDE`` pixels: that is fast, and it makes the crop the same for a slice and its
    rescaled copy, whatever the resolution.

    Parameters
    ----------
    pixels : 2-D array of any numeric type and range (as ``imageio`` decodes it).
    config : the preprocessing settings.

    Returns
    -------
    float32 array of shape ``(image_size, image_size, 1)`` with values in [0, 1].

    Examples
    --------
    >>> img = np.zeros((200, 300), np.float32); img[50:150, 100:200] = 100.0
    >>> preprocess(img, PreprocessConfig(image_size=64)).shape
    (64, 64, 1)
    """
    grey, crop, (low, high) = _plan(pixels, config)
    return config.arithmetic.to_input(grey[crop], low, high, config.image_size)[..., np.newaxis]


def project_mask(mask: np.ndarray, pixels: np.ndarray, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Carry a mask drawn on ``pixels`` (e.g. a synthetic lesion) into model-input coordinates.

    The same crop and letterbox as :func:`preprocess`, with nearest-neighbour resizing, so an
    explanation on the model input can be compared with the mask. A mask of the stored image
    whose pixels were decoded reduced (a large JPEG, version 3) is first shrunk to their size.

    Examples
    --------
    >>> img = np.zeros((100, 100), np.float32); img[20:80, 20:80] = 50.0
    >>> lesion = np.zeros((100, 100), bool); lesion[40:50, 40:50] = True
    >>> project_mask(lesion, img, PreprocessConfig(image_size=64)).shape
    (64, 64)
    """
    _, crop, _ = _plan(pixels, config)
    mask = np.asarray(mask, np.uint8)
    if mask.shape != np.shape(pixels):
        mask = cv2.resize(mask, np.shape(pixels)[::-1], interpolation=cv2.INTER_NEAREST)
    cropped = mask[crop]
    resized = cv2.resize(cropped, _letterbox_size(cropped.shape, config.image_size), interpolation=cv2.INTER_NEAREST)
    return _pad(resized, config.image_size) > 0


def _plan(pixels: np.ndarray, config: PreprocessConfig) -> tuple[np.ndarray, tuple[slice, slice], tuple[float, float]]:
    """The grey image (float32 in version 1, its own type from version 2 on), the crop to the head, and the
    intensity percentiles."""
    arithmetic = config.arithmetic
    grey = arithmetic.working_copy(np.asarray(pixels))
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise ValueError(f"preprocess expects a 2-D grey image; received shape {grey.shape}")
    # Only floating point holds NaN or infinity (DICOM values, converted colour). The whole image is
    # checked: from version 2 on, the shrunk copy leaves out up to k - 1 border rows and columns.
    if grey.dtype == np.float32 and not np.isfinite(grey).all():
        grey = np.nan_to_num(grey, nan=0.0, posinf=0.0, neginf=0.0)
    small = arithmetic.mask_copy(grey)
    mask = arithmetic.head_mask(small)
    percentiles = _percentiles(small, mask, config.low_percentile, config.high_percentile)
    crop = (slice(None), slice(None))
    if config.crop_to_head:
        top, bottom, left, right = _bounding_box(mask, config.margin)
        crop = (_scaled_span(top, bottom, small.shape[0], grey.shape[0]),
                _scaled_span(left, right, small.shape[1], grey.shape[1]))
    return grey, crop, percentiles


def head_mask(unit: np.ndarray) -> np.ndarray:
    """Boolean mask of the largest bright connected region of a [0, 1] image (the head).

    Falls back to the whole image when no clear foreground exists (blank or uniform images).
    """
    small = cv2.GaussianBlur(unit, (5, 5), 0)
    return _largest_bright_region(np.clip(small * 255.0, 0, 255).astype(np.uint8))


def _head_mask_8bit(small: np.ndarray) -> np.ndarray:
    """From version 2 on, :func:`head_mask`: scaled to 0..255 and blurred in 8 bits, without float copies."""
    as_byte = cv2.normalize(small, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
    return _largest_bright_region(cv2.GaussianBlur(as_byte, (5, 5), 0))


def _largest_bright_region(as_byte: np.ndarray) -> np.ndarray:
    """The largest connected region above half of Otsu's level of a blurred 8-bit image; all of it
    when there is no clear foreground."""
    darkest, brightest, _, _ = cv2.minMaxLoc(as_byte)
    if brightest - darkest < 8:
        return np.ones(as_byte.shape, dtype=bool)
    otsu, _ = cv2.threshold(as_byte, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Half of Otsu's level keeps dark tissue (CSF on T1) inside the head.
    foreground = as_byte > max(otsu * 0.5, 4)
    # 16-bit labels: a 128-pixel copy has at most 8,192 regions. Labels without statistics: OpenCV's
    # per-region statistics cost more than the labelling itself.
    count, labels = cv2.connectedComponents(foreground.view(np.uint8), connectivity=8, ltype=cv2.CV_16U)
    if count <= 1:
        return np.ones(as_byte.shape, dtype=bool)
    if count == 2:  # one region, the foreground itself (most slices: the head alone)
        region, area = foreground, cv2.countNonZero(foreground.view(np.uint8))
    else:
        areas = cv2.calcHist([labels], [0], None, [count], [0, count]).ravel()  # pixels per label
        largest = 1 + int(np.argmax(areas[1:]))
        region, area = labels == largest, areas[largest]
    if area < 0.02 * as_byte.size:
        return np.ones(as_byte.shape, dtype=bool)
    return region


def _min_max(grey: np.ndarray) -> np.ndarray:
    low, high = float(grey.min()), float(grey.max())
    if high - low < 1e-12:
        return np.zeros_like(grey)
    return (grey - low) / (high - low)


def _bounding_box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    left, top, box_width, box_height = cv2.boundingRect(mask.view(np.uint8))  # of the non-zero pixels
    pad_r = int(round(margin * box_height))
    pad_c = int(round(margin * box_width))
    height, width = mask.shape
    return (
        max(0, top - pad_r),
        min(height, top + box_height + pad_r),
        max(0, left - pad_c),
        min(width, left + box_width + pad_c),
    )


def _fit_side(grey: np.ndarray, side: int) -> np.ndarray:
    """Version 1: the image resized so that its longer side is ``side`` pixels (aspect ratio kept)."""
    interpolation = cv2.INTER_AREA if side < max(grey.shape) else cv2.INTER_LINEAR
    return cv2.resize(grey, _letterbox_size(grey.shape, side), interpolation=interpolation)


def resize_by_blocks(image: np.ndarray, size: tuple[int, int], remainder: int) -> np.ndarray:
    """From version 2 on: resize to ``size`` (width, height), shrinking by whole k x k blocks first.

    Averaging k x k blocks is OpenCV's fast integer path; the factor left (under 2) is resampled
    with ``remainder`` on the k-times smaller image. The last ``k - 1`` rows and columns at most are
    dropped so the blocks fit, which only the image's border feels. Enlarging is bilinear.

    Examples
    --------
    >>> resize_by_blocks(np.zeros((300, 200), np.uint8), (100, 150), cv2.INTER_AREA).shape
    (150, 100)
    """
    width, height = size
    factor = min(image.shape[0] // height, image.shape[1] // width)
    if factor >= 2:
        rows, columns = image.shape[0] - image.shape[0] % factor, image.shape[1] - image.shape[1] % factor
        image = cv2.resize(image[:rows, :columns], (columns // factor, rows // factor), interpolation=cv2.INTER_AREA)
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] > height or image.shape[1] > width
    return cv2.resize(image, size, interpolation=remainder if shrinking else cv2.INTER_LINEAR)


def _scaled_span(start: int, stop: int, small_length: int, full_length: int) -> slice:
    """The slice of the full-resolution axis covered by ``start:stop`` on the shrunk axis."""
    factor = full_length / small_length
    return slice(max(0, math.floor(start * factor)), min(full_length, math.ceil(stop * factor)))


def _percentiles(small: np.ndarray, mask: np.ndarray, low_pct: float, high_pct: float) -> tuple[float, float]:
    if small.dtype == np.uint8:  # one masked histogram, no copy of the values
        counts = cv2.calcHist([small], [0], mask.view(np.uint8) if mask.any() else None, [256], [0, 256])
        low, high = _percentiles_of_counts(counts.ravel(), (low_pct, high_pct))
    else:
        low, high = linear_percentiles(small[mask] if mask.any() else small.ravel(), (low_pct, high_pct))
    if high - low < 1e-6:
        low, high = float(small.min()), float(small.max())
    return float(low), float(high)


def linear_percentiles(values: np.ndarray, percents: tuple[float, ...]) -> list[float]:
    """The same numbers as ``np.percentile(values, percents)`` (linear method), for 1-D ``values``.

    One partial sort for all the percentiles: about a third of numpy's time on the mask of one image;
    for 8-bit values, one histogram (a fifth of the partial sort's time).

    Examples
    --------
    >>> linear_percentiles(np.arange(11, dtype=np.float32), (10.0, 95.0))
    [1.0, 9.5]
    """
    if values.dtype == np.uint8:
        return _percentiles_of_counts(np.bincount(values, minlength=256), percents)
    last = values.size - 1
    positions = [percent / 100 * last for percent in percents]
    below = [int(np.floor(position)) for position in positions]
    ordered = np.partition(values, sorted({index for low in below for index in (low, min(low + 1, last))}))
    return [_lerp(ordered[low], ordered[min(low + 1, last)], position - low)
            for low, position in zip(below, positions, strict=True)]


def _percentiles_of_counts(counts: np.ndarray, percents: tuple[float, ...]) -> list[float]:
    """:func:`linear_percentiles` of 8-bit values given as their histogram (``counts[v]``: how many are v)."""
    ends = np.cumsum(counts, dtype=np.int64)  # ends[v]: how many values are <= v
    last = int(ends[-1]) - 1
    positions = [percent / 100 * last for percent in percents]
    below = [math.floor(position) for position in positions]
    # The values ranked low and low + 1 for each percentile, found in one search.
    ranks = [rank for low in below for rank in (low, min(low + 1, last))]
    values = np.searchsorted(ends, ranks, side="right").astype(np.uint8)
    return [_lerp(values[2 * i], values[2 * i + 1], position - low)
            for i, (low, position) in enumerate(zip(below, positions, strict=True))]


def _lerp(low: np.generic, high: np.generic, fraction: float) -> float:
    """numpy's interpolation between neighbours, rounding included (difference in the input type)."""
    difference = float(high - low)
    if fraction >= 0.5:
        return float(high) - difference * (1 - fraction)
    return float(low) + difference * fraction


def _rescale(grey: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``low..high`` to 0..1 and clip, in float32 and in place on one new array.

    8-bit values (from version 2 on) go through a 256-entry table made by the same arithmetic: the same
    numbers in one OpenCV pass.
    """
    if grey.dtype == np.uint8:
        return cv2.LUT(grey, _rescale(np.arange(256, dtype=np.float32), low, high))
    if high - low < 1e-6:
        return np.zeros_like(grey, dtype=np.float32)
    scaled = np.subtract(grey, np.float32(low), dtype=np.float32)
    np.divide(scaled, np.float32(high - low), out=scaled)
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def _letterbox_size(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """(width, height) of an image of ``shape`` scaled to fit a ``size`` square, aspect ratio kept:
    the longer side becomes ``size`` (the model input, or the head-finding copy's ``MASK_SIDE``)."""
    height, width = shape[:2]
    scale = size / max(height, width)
    return max(1, min(size, int(round(width * scale)))), max(1, min(size, int(round(height * scale))))


def _letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Version 1: resize into a ``size`` square (area averaging when shrinking) and pad with zeros."""
    interpolation = cv2.INTER_AREA if size < max(image.shape) else cv2.INTER_LINEAR
    return _pad(cv2.resize(image, _letterbox_size(image.shape, size), interpolation=interpolation), size)


def _pad(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (at most ``size`` on each side) centred on a ``size`` square of zeros, in one OpenCV call."""
    new_h, new_w = image.shape
    top, left = (size - new_h) // 2, (size - new_w) // 2
    return cv2.copyMakeBorder(image, top, size - new_h - top, left, size - new_w - left, cv2.BORDER_CONSTANT, value=0)
