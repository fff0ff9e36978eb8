"""The NIfTI reader (nibabel): one 3-D volume in, 2-D slices out, each shown as a viewer shows it.

A volume is recognised by its content: the NIfTI-1 magic ``n+1`` at byte 344 or the NIfTI-2
magic ``n+2\\0\\r\\n\\x1a\\n`` at byte 4, in the file or in its gzip stream. Then, one step per
function:

1. the header is checked before any voxel is decompressed: the declared size against the pixel
   budget (a small ``.nii.gz`` can declare gigabytes), the shape (3-D; a 4-D time series or
   multi-echo set is refused with its shape named, see :func:`read_volume`) and the voxel type;
2. the voxels are read with the header's ``scl_slope``/``scl_inter`` applied (real-world values)
   and turned to the closest canonical orientation, RAS+ (``nibabel.as_closest_canonical``): array
   axis 0 points to the patient's right, axis 1 anterior, axis 2 superior;
3. intensities are windowed once for the whole volume, between percentiles of the volume itself
   (:func:`intensity_window`), never per slice: an edge slice with little tissue stays dark instead of
   being stretched into noise;
4. slices are cut in the planes asked for (by default the acquisition plane, the one with the finest
   in-plane resolution), turned to radiological display (anatomical up; the patient's right on the
   viewer's left in axial and coronal slices, anterior on the left in sagittal ones, as DICOM viewers
   show them) and resampled to square pixels;
5. slices that barely cut the head are named (:func:`outside_head_reasons`), so a scan reports them as
   ``low_quality`` rows instead of hiding them.

A slice's index counts along the canonical axis: from inferior (axial), posterior (coronal) or the
patient's left (sagittal).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from mriscan.io.image import REEXPORT, DecodedImage, Refusal

if TYPE_CHECKING:
    import nibabel as nib

Plane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[Plane, ...] = ("axial", "coronal", "sagittal")
PLANE_CHOICES = ("acquisition", *PLANES, "all")
"""What ``--planes`` accepts: the acquisition plane (the default), one plane, or all three."""

LOW_PERCENTILE = 0.5
"""Percentile of all voxels mapped to black."""
HIGH_PERCENTILE = 99.5
"""Percentile of the head's voxels mapped to white (a few bright vessels or fat do not set the scale)."""
MIN_HEAD_FRACTION = 0.10
"""A slice whose head section is under this fraction of the plane's largest one is 'outside the head'."""

_NIFTI1_MAGIC, _NIFTI1_MAGIC_OFFSET = b"n+1\x00", 344
_NIFTI2_MAGIC, _NIFTI2_MAGIC_OFFSET = b"n+2\x00\r\n\x1a\n", 4
_HEADER_BYTES = 544  # a NIfTI-2 header (540 bytes) and the 4-byte extension flag
_GZIP_MAGIC = b"\x1f\x8b"
_SAMPLE_SIZE = 250_000
_SQUARE_TOLERANCE = 0.01
_MAX_SLICE_SIDE = 2048
_AXIS_OF_PLANE = {"sagittal": 0, "coronal": 1, "axial": 2}
_EXTRACT = "Extract the 3-D volume you want (e.g. with fslroi or nibabel), save it as its own .nii, then rescan."


@dataclass(frozen=True, eq=False)
class Volume:
    """One 3-D volume in canonical RAS+ orientation.

    Attributes
    ----------
    data : float32 voxels in real-world units (``scl_slope``/``scl_inter`` applied); axis 0 points to
        the patient's right, axis 1 anterior, axis 2 superior.
    voxel_sizes : millimetres between voxel centres along each of those axes.
    """

    data: np.ndarray
    voxel_sizes: tuple[float, float, float]


def nifti_version(data: bytes) -> int | None:
    """Return 1 or 2 when ``data`` (plain or gzip) starts with a single-file NIfTI header, else None.

    Examples
    --------
    >>> import gzip
    >>> header = bytes(344) + b"n+1\\x00"
    >>> nifti_version(header), nifti_version(gzip.compress(header)), nifti_version(b"\\x89PNG")
    (1, 1, None)
    """
    head = _gunzip_head(data) if data.startswith(_GZIP_MAGIC) else data[:_HEADER_BYTES]
    if head[_NIFTI1_MAGIC_OFFSET:_NIFTI1_MAGIC_OFFSET + 4] == _NIFTI1_MAGIC:
        return 1
    if head[_NIFTI2_MAGIC_OFFSET:_NIFTI2_MAGIC_OFFSET + 8] == _NIFTI2_MAGIC:
        return 2
    return None


def _gunzip_head(data: bytes) -> bytes:
    """The first bytes of a gzip stream's content; empty when the stream is damaged."""
    try:
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(data, _HEADER_BYTES)
    except zlib.error:
        return b""


def read_volume(data: bytes, max_pixels: int) -> Volume:
    """Decode the bytes of a ``.nii`` or ``.nii.gz`` file into a canonical 3-D volume.

    Shapes with trailing axes of length 1 (``(x, y, z, 1)``) and 2-D images (``(x, y)``) count as
    3-D. A 4-D volume with more than one volume (a time series, diffusion or multi-echo set) is
    refused, naming its shape: which of its volumes is the structural image is not something a
    reader can guess, and scoring an fMRI or diffusion volume with a structural model would give
    confident nonsense.

    Raises
    ------
    Refusal
        For a damaged or truncated file, a 4-D volume, a voxel type that is not grey (complex,
        RGB), or a declared size above ``max_pixels`` voxels (``too_large``; nothing is decompressed).
    """
    import nibabel as nib

    version = nifti_version(data)
    if version is None:
        raise Refusal("it is not a single-file NIfTI-1 or NIfTI-2 volume")
    image_type = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    header = _parse_header(image_type, data)
    shape = _checked_shape(header, max_pixels)
    needed = int(header.get_data_offset()) + int(np.prod(shape)) * header.get_data_dtype().itemsize
    raw = _gunzip(data, needed) if data.startswith(_GZIP_MAGIC) else data
    if len(raw) < needed:
        raise Refusal(f"the file is truncated: it holds {max(0, len(raw) - header.get_data_offset()):,} of "
                      f"the {needed - header.get_data_offset():,} bytes of voxel data its header declares")
    image = image_type.from_bytes(raw[:needed])
    return _canonical_volume(nib.as_closest_canonical(_as_3d(image, shape)))


def _parse_header(image_type: type[nib.Nifti1Image], data: bytes) -> nib.Nifti1Header:
    """Read and check the header (nibabel's checks: size, dimensions, data type)."""
    head = _gunzip_head(data) if data.startswith(_GZIP_MAGIC) else data[:_HEADER_BYTES]
    try:
        return image_type.header_class.from_fileobj(io.BytesIO(head), check=True)
    except Exception as error:  # nibabel raises several types on a damaged header
        raise Refusal(f"the NIfTI header is damaged ({error})") from error


def _checked_shape(header: nib.Nifti1Header, max_pixels: int) -> tuple[int, ...]:
    """The declared shape, once it is known to be a grey 3-D volume within the pixel budget."""
    shape = tuple(int(side) for side in header.get_data_shape())
    described = " x ".join(str(side) for side in shape)
    if len(shape) > 3 and any(side > 1 for side in shape[3:]):
        raise Refusal(f"it is a {len(shape)}-D volume ({described}: a time series, diffusion or multi-echo "
                      "set); mriscan reads 3-D structural volumes", _EXTRACT)
    dtype = header.get_data_dtype()
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise Refusal(f"its voxels are {dtype} values, not grey levels (e.g. RGB or complex)",
                      "Convert it to a grey structural volume, then rescan.")
    if int(np.prod(shape)) > max_pixels:
        raise Refusal(f"it declares {described} voxels ({int(np.prod(shape)):,}), above the limit of "
                      f"{max_pixels:,} that guards against decompression bombs",
                      "If the volume is genuine, raise the limit with --max-pixels.", too_large=True)
    if 0 in shape:
        raise Refusal(f"it declares an empty volume ({described})", REEXPORT)
    return shape


def _gunzip(data: bytes, size: int) -> bytes:
    """At most ``size`` bytes of a gzip stream's content (what a truncated stream holds, if less)."""
    try:
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(data, size)
    except zlib.error as error:
        raise Refusal(f"its gzip compression is damaged ({error})") from error


def _as_3d(image: nib.Nifti1Image, shape: tuple[int, ...]) -> nib.Nifti1Image:
    """The image with trailing axes of length 1 dropped, or a 2-D image given a third axis."""
    if len(shape) == 3:
        return image
    import nibabel as nib

    shape3 = (*shape[:2], shape[2] if len(shape) > 2 else 1)
    data = np.asarray(image.dataobj).reshape(shape3)
    return nib.Nifti1Image(data, image.affine)


def _canonical_volume(image: nib.Nifti1Image) -> Volume:
    """Real-world float32 voxels (the proxy applies scl_slope/scl_inter) and the voxel sizes."""
    import nibabel as nib

    # Kept in the file's memory order (NIfTI stores x fastest): the copy is then one sequential pass
    # (a C-ordered copy of the flipped view is several times slower), and axial slices are contiguous.
    data = np.asarray(image.dataobj, dtype=np.float32, order="K")
    if image.get_data_dtype().kind == "f":
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0, copy=False)
    # An axis without a usable spacing (e.g. pixdim 0 in a 2-D image) counts as 1 mm.
    sizes = tuple(float(size) if np.isfinite(size) and size > 0 else 1.0
                  for size in nib.affines.voxel_sizes(image.affine))
    return Volume(data=data, voxel_sizes=sizes)  # type: ignore[arg-type]


def acquisition_plane(voxel_sizes: tuple[float, float, float]) -> Plane:
    """The plane with the finest in-plane resolution: the one across the axis with the widest spacing.

    Near-isotropic volumes (spacings within 1% of each other) give axial, the plane read first.

    Examples
    --------
    >>> acquisition_plane((0.7, 0.7, 4.0)), acquisition_plane((5.0, 0.9, 0.9)), acquisition_plane((1, 1, 1))
    ('axial', 'sagittal', 'axial')
    """
    widest = max(voxel_sizes)
    for plane in PLANES:  # axial first: it wins ties
        if voxel_sizes[_AXIS_OF_PLANE[plane]] >= widest * (1 - _SQUARE_TOLERANCE):
            return plane
    raise AssertionError("unreachable: one axis has the widest spacing")


def chosen_planes(planes: str, voxel_sizes: tuple[float, float, float]) -> tuple[Plane, ...]:
    """The planes ``--planes`` names (one of :data:`PLANE_CHOICES`) for a volume with these voxel sizes.

    Examples
    --------
    >>> chosen_planes("acquisition", (0.5, 0.5, 3.0)), chosen_planes("all", (1, 1, 1))
    (('axial',), ('axial', 'coronal', 'sagittal'))
    """
    if planes == "acquisition":
        return (acquisition_plane(voxel_sizes),)
    if planes == "all":
        return PLANES
    if planes not in PLANES:
        raise ValueError(f"planes must be one of {', '.join(PLANE_CHOICES)}, not {planes!r}")
    return (planes,)  # type: ignore[return-value]


def intensity_window(data: np.ndarray) -> tuple[float, float]:
    """The real-world values a volume's display maps to black and white.

    Black is the volume's :data:`LOW_PERCENTILE`; white the :data:`HIGH_PERCENTILE` of the head,
    the voxels above Otsu's threshold (the air around it would otherwise set the scale). Measured on
    up to a million evenly spread voxels.

    Examples
    --------
    >>> volume = np.zeros((20, 20, 20), np.float32); volume[5:15, 5:15, 5:15] = 300.0
    >>> intensity_window(volume)
    (0.0, 300.0)
    """
    sample = _sample(data)
    return _window(sample, head_threshold(sample))


def _sample(data: np.ndarray) -> np.ndarray:
    """About :data:`_SAMPLE_SIZE` voxels on an even 3-D grid (a strided view: the volume is not copied)."""
    step = max(1, int(np.ceil((data.size / _SAMPLE_SIZE) ** (1 / data.ndim))))
    return data[(slice(None, None, step),) * data.ndim].ravel()


def _window(sample: np.ndarray, threshold: float) -> tuple[float, float]:
    low = float(np.percentile(sample, LOW_PERCENTILE))
    head = sample[sample > threshold]
    high = float(np.percentile(head, HIGH_PERCENTILE)) if head.size else float(sample.max())
    return (low, high) if high > low else (low, low + 1.0)


def head_threshold(values: np.ndarray) -> float:
    """Otsu's threshold between air and tissue, over 256 levels of the values' range.

    Examples
    --------
    >>> 2.0 <= head_threshold(np.array([0.0, 1.0, 2.0, 100.0, 101.0, 102.0])) < 100.0
    True
    """
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return high
    levels = np.round((values - low) * (255.0 / (high - low))).astype(np.uint8).reshape(1, -1)
    level, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return low + level * (high - low) / 255.0


def to_display(data: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Map real-world values to uint8 grey: ``window`` to 0..255, clipped.

    Examples
    --------
    >>> to_display(np.array([-5.0, 0.0, 50.0, 100.0, 500.0]), (0.0, 100.0)).tolist()
    [0, 0, 128, 255, 255]
    """
    low, high = window
    # Values under black raised to it, then OpenCV scales, rounds and saturates in one pass.
    floor = np.maximum(np.asarray(data, dtype=np.float32), np.float32(low))
    order = "F" if floor.flags.f_contiguous and not floor.flags.c_contiguous else "C"  # no copy either way
    scale = 255.0 / (high - low)
    display = cv2.convertScaleAbs(floor.reshape(-1, 1, order=order), alpha=scale, beta=-low * scale)
    return display.reshape(floor.shape, order=order)


def display_slice(display: np.ndarray, plane: Plane, index: int) -> np.ndarray:
    """One slice of a canonical (RAS+) volume in radiological display orientation, as a contiguous copy.

    Rows run from anterior (axial) or superior (coronal, sagittal) at the top; columns from the
    patient's right (axial, coronal) or anterior (sagittal) at the left.

    Examples
    --------
    >>> volume = np.zeros((3, 4, 5), np.uint8)
    >>> [display_slice(volume, plane, 0).shape for plane in ("axial", "coronal", "sagittal")]
    [(4, 3), (5, 3), (5, 4)]
    """
    if plane == "axial":
        view = display[::-1, ::-1, index].T
    elif plane == "coronal":
        view = display[::-1, index, ::-1].T
    else:
        view = display[index, ::-1, ::-1].T
    return np.ascontiguousarray(view)


def square_pixels(pixels: np.ndarray, row_spacing: float, column_spacing: float) -> np.ndarray:
    """Resample a slice so that its pixels are square, at its finer spacing (bilinear).

    Examples
    --------
    >>> square_pixels(np.zeros((10, 40), np.uint8), row_spacing=4.0, column_spacing=1.0).shape
    (40, 40)
    """
    if abs(row_spacing - column_spacing) <= _SQUARE_TOLERANCE * max(row_spacing, column_spacing):
        return pixels
    finest = min(row_spacing, column_spacing)
    height, width = pixels.shape[0] * row_spacing / finest, pixels.shape[1] * column_spacing / finest
    shrink = min(1.0, _MAX_SLICE_SIDE / max(height, width))
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR)


def outside_head_reasons(head_voxels: np.ndarray, plane: Plane) -> list[str]:
    """For each slice of a plane, why it does not show the head (empty when it does).

    ``head_voxels`` counts the head's voxels in each slice; a slice holding under
    :data:`MIN_HEAD_FRACTION` of the largest count is outside the head (air, or a sliver of the
    scalp): such a slice is reported, not scored as if it showed a brain.

    Examples
    --------
    >>> for reason in outside_head_reasons(np.array([0, 50, 1000]), "axial"): print(repr(reason))
    'outside the head: no head tissue in this axial slice'
    'outside the head: its head section is 5% of the largest axial one'
    ''
    """
    largest = int(head_voxels.max()) if head_voxels.size else 0
    reasons: list[str] = []
    for count in head_voxels:
        fraction = count / largest if largest else 0.0
        if fraction >= MIN_HEAD_FRACTION:
            reasons.append("")
        elif count == 0:
            reasons.append(f"outside the head: no head tissue in this {plane} slice")
        else:
            reasons.append(f"outside the head: its head section is {fraction:.0%} of the largest {plane} one")
    return reasons


def decode_nifti(data: bytes, max_pixels: int, planes: str = "acquisition") -> list[DecodedImage]:
    """Decode a NIfTI volume into its slices in ``planes`` (one of :data:`PLANE_CHOICES`), as viewers show them.

    Raises
    ------
    Refusal
        As :func:`read_volume`.
    """
    return list(volume_slices(read_volume(data, max_pixels), planes))


def volume_slices(volume: Volume, planes: str = "acquisition") -> Iterator[DecodedImage]:
    """Every slice of ``volume`` in the planes named by ``planes`` (one of :data:`PLANE_CHOICES`).

    The volume is windowed and converted to 8 bits once; each slice is then a view turned for
    display, resampled to square pixels when its voxels are not. ``frame`` is the slice's index.
    """
    sample = _sample(volume.data)
    threshold = head_threshold(sample)
    display = to_display(volume.data, _window(sample, threshold))
    head = volume.data > threshold
    for plane in chosen_planes(planes, volume.voxel_sizes):
        axis = _AXIS_OF_PLANE[plane]
        other_axes = tuple(a for a in range(3) if a != axis)
        head_voxels = np.count_nonzero(head, axis=other_axes)
        # Display rows run along the higher remaining axis, columns along the lower one.
        column_spacing, row_spacing = (volume.voxel_sizes[a] for a in other_axes)
        for index, reasons in enumerate(outside_head_reasons(head_voxels, plane)):
            pixels = square_pixels(display_slice(display, plane, index), row_spacing, column_spacing)
            yield DecodedImage(pixels=pixels, frame=index, kind="nifti", had_colour=False, plane=plane,
                               outside_head=reasons)
