"""Explanations of one prediction: which regions of the model input push it toward "tumour".

Two explainers give the same kind of answer, an :class:`Explanation` (signed per-pixel weights
over the model input, positive toward tumour; :mod:`mriscan.explain.base`). This module is LIME's:

- :class:`LimeExplainer` fits LIME's local linear model over superpixels made for MRI slices,
  inside the brain only (see :func:`mri_superpixels`), hiding a superpixel by showing the tissue
  around it rather than black (:func:`hidden_tissue`). It renders perturbed images in large
  vectorised batches and calls a compiled forward pass, many times faster than LIME's defaults
  (``benchmarks/bench_explain.py``). Given the bundle's ONNX network, LIME queries that instead:
  the network whose probability scan writes to the CSV (int8 for fitted bundles), so the
  explanation and the decision come from the same network.
- :class:`~mriscan.explain.keras_explain.GradCamExplainer` weighs the last Conv2D layer's activations by
  the gradient of the tumour logit: one forward and one backward pass, its map kept to the brain
  as LIME's superpixels are. It needs the Keras model,
  so it lives, with LIME's Keras forward pass, in :mod:`mriscan.explain.keras_explain`: LIME on a network
  file never imports TensorFlow.

Explainers are built once per model and reused for every image. ``explain`` keeps no state
between calls (each call seeds its own random generator), so the same image, model and settings
give the same weights, in any order and from several threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import cv2
import numpy as np
from lime.lime_image import LimeImageExplainer
from skimage.segmentation import slic

from mriscan.errors import ExplainError
from mriscan.explain.base import Explanation, brain_region, grey_input
from mriscan.model.bundle import network_probability

if TYPE_CHECKING:
    import keras

LIME_BATCH_SIZE = 256


def mri_superpixels(image: np.ndarray, n_segments: int = 80, compactness: float = 0.2,
                    region: np.ndarray | None = None) -> np.ndarray:
    """Superpixels for LIME on one MRI slice: compact SLIC regions inside the brain.

    Why not LIME's default (quickshift, kernel 4)? On a 150x150 slice it yields about a dozen
    irregular regions that straddle lesion and healthy tissue, so LIME can only say "this big
    blob". SLIC restricted to :func:`~mriscan.explain.base.brain_region` gives 50-100 compact
    regions of similar size (a lesion a tenth of the brain wide covers a few of them), is cheap,
    and is deterministic (skimage seeds its mask centroids with a fixed state). Compactness 0.2 on
    [0, 1] intensities lets boundaries follow strong edges while keeping the count stable across
    slices. Everything outside the brain (skull, scalp, air, letterbox) is one fixed segment,
    label 0, which :class:`LimeExplainer` never hides: it is context, not a candidate region.

    Parameters
    ----------
    image : (S, S) or (S, S, 1) model input with values in [0, 1].
    n_segments : approximate number of superpixels inside the brain.
    compactness : SLIC's balance of intensity against distance.
    region : (S, S) boolean mask to cut into superpixels instead of the brain (e.g. to compare
        with another region in a benchmark).

    Returns
    -------
    int32 array (S, S) of labels 0..n: 0 is outside the brain (no pixel has it when no head is
    found), 1..n the superpixels, without gaps.

    Examples
    --------
    >>> img = np.zeros((64, 64), np.float32); img[8:56, 8:56] = 0.5
    >>> labels = mri_superpixels(img, n_segments=16)
    >>> int(labels[0, 0]), int(labels[8, 32]), bool(10 <= labels.max() <= 20)
    (0, 0, True)
    """
    grey = grey_input(image)
    labels = slic(
        grey,
        n_segments=n_segments,
        compactness=compactness,
        mask=brain_region(grey) if region is None else region,
        channel_axis=None,
        start_label=1,
    )
    # LIME indexes features by label value, so labels must have no gaps; 0 stays outside the brain.
    _, contiguous = np.unique(np.concatenate([[0], labels.ravel()]), return_inverse=True)
    return contiguous[1:].reshape(labels.shape).astype(np.int32)


def hidden_tissue(image: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """What LIME shows in place of a hidden superpixel: the brain's smoothed tissue intensity.

    Hiding must remove what a region shows (a lesion) without drawing something new. Black, LIME's
    usual fill, cuts a dark hole with a sharp edge into the brain, which a tumour detector reads as
    a hypointense lesion or the head's border, so LIME measured the network's response to holes.
    Here a hidden pixel takes the tissue intensity around it: the brain's pixels clipped to their
    interquartile range (neither a lesion nor a ventricle leaks into its neighbours' fill), then
    averaged with a Gaussian over the brain only (sigma a quarter of its equivalent radius, larger
    than a superpixel), which follows the bias field and grey/white contrast at a coarse scale.
    Outside the brain (label 0) it is the image itself, so hiding never changes those pixels.

    Parameters
    ----------
    image : (S, S) or (S, S, 1) model input with values in [0, 1].
    segments : :func:`mri_superpixels` of that input.

    Returns
    -------
    float32 array (S, S).

    Examples
    --------
    >>> img = np.zeros((64, 64), np.float32); img[8:56, 8:56] = 0.5; img[28:36, 28:36] = 1.0
    >>> fill = hidden_tissue(img, mri_superpixels(img, n_segments=16))
    >>> round(float(fill[32, 32]), 2), float(fill[0, 0])
    (0.5, 0.0)
    """
    grey = grey_input(image)
    brain = segments > 0
    if not brain.any():
        return grey.copy()
    low, high = np.percentile(grey[brain], (25, 75))
    sigma = 0.25 * float(np.sqrt(brain.sum() / np.pi))
    tissue = cv2.GaussianBlur(np.where(brain, np.clip(grey, low, high), 0.0).astype(np.float32), (0, 0), sigma)
    share = cv2.GaussianBlur(brain.astype(np.float32), (0, 0), sigma)
    return np.where(brain, tissue / np.maximum(share, 1e-6), grey).astype(np.float32)


class LimeExplainer:
    """LIME over :func:`mri_superpixels`, with batched rendering and a compiled forward pass.

    Parameters
    ----------
    model : keras model mapping (n, S, S, 1) float32 to (n, 1) sigmoid P(tumour); unused with ``network``.
    image_size : S.
    num_samples : number of perturbed images LIME's linear model is fitted on.
    batch_size : perturbed images rendered and classified per ``classify`` call.
    seed : seeds LIME's perturbations; the segmentation is deterministic by itself.
    network : a network file's session (``OnnxNetwork``) to query instead of ``model``, as scan does.

    Notes
    -----
    A switched-off superpixel shows :func:`hidden_tissue` (the brain's smoothed tissue intensity),
    not black. The segment outside the brain (label 0) is on in every perturbed image, so its
    weight is exactly 0 and it never colours an overlay.
    """

    method = "lime"

    def __init__(
        self,
        model: keras.Model | None,
        image_size: int,
        *,
        num_samples: int = 1000,
        batch_size: int = LIME_BATCH_SIZE,
        seed: int = 2021,
        network: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if num_samples < 10 or batch_size < 1:
            raise ExplainError(
                "LIME needs num_samples >= 10 and batch_size >= 1; "
                f"received: num_samples={num_samples}, batch_size={batch_size}"
            )
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        if network is not None:
            self._probabilities: Callable[[np.ndarray], np.ndarray] = NetworkProbabilities(network, image_size)
        else:
            from mriscan.explain.keras_explain import CompiledProbabilities

            self._probabilities = CompiledProbabilities(model, image_size)

    def classify(self, images: np.ndarray) -> np.ndarray:
        """LIME's ``classifier_fn``: (n, S, S, C) images -> (n, 2) [P(no tumour), P(tumour)].

        LIME works on RGB; the grey slice is in every channel, so channel 0 is the model input.
        """
        grey = np.ascontiguousarray(images[..., :1], dtype=np.float32)
        tumour = self._probabilities(grey)
        return np.stack([1.0 - tumour, tumour], axis=1)

    def explain(self, image: np.ndarray) -> Explanation:
        """Explain one (S, S, 1) model input; see :class:`Explanation`."""
        grey = grey_input(image)
        segments = mri_superpixels(grey)
        hidden = np.repeat(hidden_tissue(grey, segments)[..., np.newaxis], 3, axis=2)
        lime = _BatchedLimeImageExplainer(random_state=self.seed, feature_selection="none")
        # LIME sets its fill image with ``fudged_image[:] = hide_color``: an image broadcasts as a colour does.
        result = lime.explain_instance(
            np.repeat(grey[..., np.newaxis], 3, axis=2),
            self.classify,
            labels=(1,),
            top_labels=None,
            hide_color=hidden,
            num_features=int(segments.max()) + 1,
            num_samples=self.num_samples,
            batch_size=self.batch_size,
            segmentation_fn=lambda _: segments,
        )
        per_segment = np.zeros(int(segments.max()) + 1, dtype=np.float32)
        for label, weight in result.local_exp[1]:
            per_segment[label] = weight
        details = f"LIME, {self.num_samples} samples, {per_segment.size - 1} superpixels, seed {self.seed}"
        return Explanation(
            weights=per_segment[segments],
            segments=segments,
            probability=float(lime.first_probability),
            method="lime",
            details=details,
        )


class _BatchedLimeImageExplainer(LimeImageExplainer):
    """LIME with the perturbation rendering vectorised.

    LIME's own ``data_labels`` builds each perturbed image in a Python loop over superpixels;
    here a whole batch is one ``take`` and one ``where``. The random
    draws and the images passed to ``classifier_fn`` are the same as LIME's (one grey channel
    instead of three identical ones), but for label 0, outside the brain, which is never hidden:
    its column of the on/off matrix is all ones, a constant feature the linear model gives weight 0.
    """

    first_probability: float = float("nan")

    def data_labels(
        self,
        image: np.ndarray,
        fudged_image: np.ndarray,
        segments: np.ndarray,
        classifier_fn: Callable[[np.ndarray], np.ndarray],
        num_samples: int,
        batch_size: int = 10,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (on/off matrix of superpixels, classifier output) like LIME's own method."""
        # Label 0 counts even when no pixel has it (LIME counts the labels present): a feature per label.
        n_features = int(segments.max()) + 1
        data = self.random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
        data[0, :] = 1
        data[:, 0] = 1
        hidden = fudged_image[..., 0].astype(np.float32)
        shown = image[..., 0].astype(np.float32)
        labels = []
        for start in range(0, num_samples, batch_size):
            on = np.take(data[start : start + batch_size].astype(bool), segments, axis=1)
            labels.append(classifier_fn(np.where(on, shown, hidden)[..., np.newaxis]))
        labels = np.concatenate(labels)
        self.first_probability = float(labels[0, 1])
        return data, labels


class NetworkProbabilities:
    """Callable (n, S, S, 1) float32 -> (n,) P(tumour): a network file's session, computed as scan does.

    Through :func:`mriscan.model.bundle.network_probability`: fixed-size batches, so an image's probability
    does not depend on the images that come with it, and the unperturbed image gets exactly the
    network's probability in scan's CSV (before the bundle's calibration).
    """

    def __init__(self, network: Callable[[np.ndarray], np.ndarray], image_size: int) -> None:
        expected = (image_size, image_size, 1)
        received = tuple(getattr(network, "input_shape", (None, *expected))[1:])
        if received != expected:
            raise ExplainError(f"The network file takes inputs of shape {received}; expected {expected} "
                               "(the card's image size). Refit or re-export the bundle.")
        self._network = network

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Return P(tumour) for each image of ``batch``."""
        return network_probability(self._network, batch)


