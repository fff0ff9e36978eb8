"""Acquisition effects: how the same anatomy differs between scanners, protocols and exports.

Two stages. *Framing* maps the 1 mm canvas to the output pixels: field of view (head small in a
black frame or filling the image), off-centre placement, in-plane rotation, mirror image, output
size and aspect ratio. *Acquisition* then applies what the scanner and the export add: fine
texture, a smooth multiplicative bias field (coil sensitivity), blur, Rician noise (the magnitude
of complex Gaussian noise, Gudbjartsson & Patz, MRM 1995), intensity windowing and gamma, and
sometimes JPEG compression. The acquisition is drawn once from the healthy image and can be applied
to both twins of a pair, so that they differ only where the lesion was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mriscan.synth.fields import smooth_field


@dataclass(frozen=True)
class Framing:
    """Where the 1 mm canvas lands in the output image.

    Attributes
    ----------
    shape : output ``(rows, columns)``.
    matrix : 2x3 affine matrix from canvas pixels to output pixels (cv2.warpAffine convention).
    """

    shape: tuple[int, int]
    matrix: np.ndarray


@dataclass(frozen=True)
class Acquisition:
    """One scan's acquisition effects, drawn for a given output image shape.

    Attributes
    ----------
    texture, bias : multiplicative fields (1 means unchanged).
    blur_sigma : Gaussian blur in output pixels (0 for none).
    noise_real, noise_imaginary : the two Gaussian noise channels, already scaled.
    window : intensities mapped to 0 and 255.
    gamma : exponent applied after windowing.
    jpeg_quality : JPEG round-trip quality, or 0 for none.
    """

    texture: np.ndarray
    bias: np.ndarray
    blur_sigma: float
    noise_real: np.ndarray
    noise_imaginary: np.ndarray
    window: tuple[float, float]
    gamma: float
    jpeg_quality: int


def _output_shape(rng: np.random.Generator, size_range: tuple[int, int]) -> tuple[int, int]:
    """Draw the output image size: square most of the time, otherwise up to 4:3 either way."""
    low, high = size_range
    rows = int(rng.integers(low, high + 1))
    aspect = 1.0 if rng.random() < 0.6 else float(rng.uniform(0.75, 1.33))
    columns = int(np.clip(round(rows * aspect), low, high))
    return rows, columns


def random_framing(outline_box: tuple[int, int, int, int], rng: np.random.Generator,
                   size_range: tuple[int, int]) -> Framing:
    """Draw field of view, placement, rotation and mirroring for a head of a given extent.

    Parameters
    ----------
    outline_box : ``(row0, row1, col0, col1)`` of the head on the canvas.
    rng : source of every framing choice.
    size_range : smallest and largest output side in pixels.

    Returns
    -------
    The :class:`Framing`.
    """
    rows, columns = _output_shape(rng, size_range)
    row0, row1, col0, col1 = outline_box
    height, width = row1 - row0 + 1, col1 - col0 + 1
    fill = float(rng.uniform(0.55, 1.0))
    scale = fill * min(rows / height, columns / width)
    angle = float(np.clip(rng.normal(0.0, 6.0), -15.0, 15.0))
    centre = ((col0 + col1) / 2.0, (row0 + row1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    spare = np.array([columns - width * scale, rows - height * scale]) / 2.0
    shift = rng.uniform(-0.8, 0.8, size=2) * np.maximum(spare, 0.0)
    matrix[:, 2] += np.array([columns / 2.0, rows / 2.0]) + shift - np.array(centre)
    if rng.random() < 0.5:
        matrix[0] = -matrix[0]
        matrix[0, 2] += columns - 1
    return Framing(shape=(rows, columns), matrix=matrix)


def apply_framing(canvas: np.ndarray, framing: Framing, smooth: bool = True) -> np.ndarray:
    """Resample a canvas map into the output image (bicubic for images, bilinear for masks)."""
    rows, columns = framing.shape
    flags = cv2.INTER_CUBIC if smooth else cv2.INTER_LINEAR
    warped = cv2.warpAffine(canvas, framing.matrix, (columns, rows), flags=flags,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.maximum(warped, 0.0)


def draw_acquisition(healthy: np.ndarray, head: np.ndarray, rng: np.random.Generator) -> Acquisition:
    """Draw one scan's acquisition effects, windowed on the healthy image.

    Parameters
    ----------
    healthy : the framed, lesion-free float image.
    head : soft head mask in the same frame (sets the noise level and the window).
    rng : source of every effect.

    Returns
    -------
    The :class:`Acquisition`, to be applied with :func:`apply_acquisition`.
    """
    shape = healthy.shape
    texture = 1.0 + rng.uniform(0.02, 0.07) * smooth_field(rng, shape, rng.uniform(1.0, 2.5))
    bias = np.exp(rng.uniform(0.05, 0.3) * smooth_field(rng, shape, rng.uniform(0.4, 1.0) * max(shape)))
    # Every 7th head pixel is plenty for a median and a percentile.
    head_signal = (healthy * texture * bias)[head > 0.5][::7]
    typical = float(np.median(head_signal)) if head_signal.size else 1.0
    top = float(np.percentile(head_signal, 99.5)) if head_signal.size else 1.0
    sigma = np.float32(rng.uniform(0.01, 0.06) * typical)
    noise_real = sigma * rng.standard_normal(shape, dtype=np.float32)
    noise_imaginary = sigma * rng.standard_normal(shape, dtype=np.float32)
    low = sigma * rng.uniform(1.0, 3.0) if rng.random() < 0.5 else 0.0
    return Acquisition(
        texture=texture, bias=bias.astype(np.float32),
        blur_sigma=float(rng.uniform(0.3, 0.9)) if rng.random() < 0.6 else 0.0,
        noise_real=noise_real, noise_imaginary=noise_imaginary,
        window=(low, top * float(rng.uniform(0.9, 1.25))),
        gamma=float(np.clip(np.exp(rng.normal(0.0, 0.15)), 0.7, 1.4)),
        jpeg_quality=int(rng.integers(70, 96)) if rng.random() < 0.4 else 0,
    )


def apply_acquisition(image: np.ndarray, acquisition: Acquisition) -> np.ndarray:
    """Apply acquisition effects to a framed float image and quantise it to 8 bits.

    Parameters
    ----------
    image : the framed float image (with or without a lesion).
    acquisition : effects from :func:`draw_acquisition` for an image of the same shape.

    Returns
    -------
    uint8 image.
    """
    signal = image * acquisition.texture * acquisition.bias
    if acquisition.blur_sigma > 0:
        signal = cv2.GaussianBlur(signal, (0, 0), acquisition.blur_sigma)
    magnitude = np.sqrt((signal + acquisition.noise_real) ** 2 + acquisition.noise_imaginary ** 2)
    low, high = acquisition.window
    scaled = np.clip((magnitude - low) / max(high - low, 1e-6), 0.0, 1.0) ** acquisition.gamma
    quantised = np.round(scaled * 255.0).astype(np.uint8)
    if acquisition.jpeg_quality:
        _, encoded = cv2.imencode(".jpg", quantised, [cv2.IMWRITE_JPEG_QUALITY, acquisition.jpeg_quality])
        quantised = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    return quantised
