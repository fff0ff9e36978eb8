"""Explanations of one prediction: which regions of the model input push it toward "tumour".

Two explainers give the same kind of answer, an :class:`Explanation` (signed per-pixel weights
over the model input, positive toward tumour; :mod:`mriscan.explain.base`). This module is LIME's:

- :class:`LimeExplainer` fits LIME's local linear model over superpixels made for MRI slices
  (see :func:`mri_superpixels`), rendering perturbed images in large vectorised batches and
  calling a compiled forward pass, many times faster than LIME's defaults
  (``benchmarks/bench_explain.py``). Given the bundle's
  ONNX network, LIME queries that instead: the network whose probability scan writes to the CSV
  (int8 for fitted bundles), so the explanation and the decision come from the same network.
- :class:`~mriscan.explain.keras_explain.GradCamExplainer` weighs the last Conv2D layer's activations by
  the gradient of the tumour logit: one forward and one backward pass. It needs the Keras model,
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
from skimage.morphology import convex_hull_image
from skimage.segmentation import slic

from mriscan.errors import ExplainError
from mriscan.explain.base import HEAD_LEVEL, Explanation, grey_input
from mriscan.model.bundle import network_probability

if TYPE_CHECKING:
    import keras

LIME_BATCH_SIZE = 256


def head_region(image: np.ndarray) -> np.ndarray:
    """Boolean mask of the head: convex hull of the non-dark area, specks removed.

    The hull keeps dark structures inside the head (ventricles, CSF, hypointense lesions) and
    the skull rim in the head region, so only letterbox and air form the background.

    Examples
    --------
    >>> img = np.zeros((20, 20), np.float32); img[5:15, 5:15] = 0.8
    >>> int(head_region(img).sum())
    100
    """
    foreground = _without_specks(image > HEAD_LEVEL, min_area=max(1, int(0.002 * image.size)))
    if not foreground.any():
        return np.ones(image.shape, dtype=bool)
    return convex_hull_image(foreground)


def _without_specks(mask: np.ndarray, min_area: int) -> np.ndarray:
    """``mask`` without its connected components smaller than ``min_area`` pixels."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    large = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
    return np.isin(labels, large[large > 0])


def mri_superpixels(image: np.ndarray, n_segments: int = 80, compactness: float = 0.2) -> np.ndarray:
    """Superpixels for LIME on one MRI slice: compact SLIC regions inside the head.

    Why not LIME's default (quickshift, kernel 4)? On a 150x150 slice it yields about a dozen
    irregular regions that straddle lesion and healthy tissue, so LIME can only say "this big
    blob". SLIC restricted to :func:`head_region` gives 50-100 compact regions of similar size
    (a lesion a tenth of the head wide covers a few of them), is cheap, and is deterministic
    (skimage seeds its mask centroids with a fixed state). Compactness 0.2 on [0, 1] intensities
    lets boundaries follow strong edges while keeping the count stable across slices. Everything
    outside the head is one background segment (label 0), which LIME can switch off at no cost.

    Parameters
    ----------
    image : (S, S) or (S, S, 1) model input with values in [0, 1].
    n_segments : approximate number of superpixels inside the head.
    compactness : SLIC's balance of intensity against distance.

    Returns
    -------
    int32 array (S, S) of labels 0..n: 0 is the background (no pixel has it when the head
    fills the frame), 1..n the superpixels, without gaps.

    Examples
    --------
    >>> img = np.zeros((64, 64), np.float32); img[8:56, 8:56] = 0.5
    >>> labels = mri_superpixels(img, n_segments=16)
    >>> int(labels[0, 0]), bool(10 <= labels.max() <= 20)
    (0, True)
    """
    grey = grey_input(image)
    labels = slic(
        grey,
        n_segments=n_segments,
        compactness=compactness,
        mask=head_region(grey),
        channel_axis=None,
        start_label=1,
    )
    # LIME indexes features by label value, so labels must have no gaps; 0 stays the background.
    _, contiguous = np.unique(np.concatenate([[0], labels.ravel()]), return_inverse=True)
    return contiguous[1:].reshape(labels.shape).astype(np.int32)


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
    A switched-off superpixel is set to 0 (``hide_color=0``), the value of the letterbox and
    air around the head, i.e. the tissue is removed rather than blurred into its mean.
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
        lime = _BatchedLimeImageExplainer(random_state=self.seed, feature_selection="none")
        result = lime.explain_instance(
            np.repeat(grey[..., np.newaxis], 3, axis=2),
            self.classify,
            labels=(1,),
            top_labels=None,
            hide_color=0,
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
    here a whole batch is one ``take`` and one multiply-add. The random
    draws and the images passed to ``classifier_fn`` are the same as LIME's (one grey channel
    instead of three identical ones).
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
        # Label 0 counts even when the head fills the frame and no pixel has it (LIME counts the
        # labels present); it then changes nothing and gets a weight near 0.
        n_features = int(segments.max()) + 1
        data = self.random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
        data[0, :] = 1
        hidden = fudged_image[..., 0].astype(np.float32)
        shown_minus_hidden = image[..., 0].astype(np.float32) - hidden
        labels = []
        for start in range(0, num_samples, batch_size):
            images = np.take(data[start : start + batch_size].astype(np.float32), segments, axis=1)
            images *= shown_minus_hidden
            images += hidden
            labels.append(classifier_fn(images[..., np.newaxis]))
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


