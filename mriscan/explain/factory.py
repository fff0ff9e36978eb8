"""The one place that turns a method name ("lime", "gradcam") and a model into an explainer.

Grad-CAM, and LIME on a bundle without a network file, need Keras: they are imported only then,
so LIME on a network file never imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from mriscan.errors import ExplainError
from mriscan.explain.base import Explainer
from mriscan.explain.lime import LimeExplainer
from mriscan.model.bundle import ModelBundle

if TYPE_CHECKING:
    import keras

METHODS = ("lime", "gradcam")


def make_explainer(
    model: keras.Model | None,
    method: str,
    *,
    image_size: int,
    num_samples: int = 1000,
    seed: int = 2021,
    network: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Explainer:
    """Build the explainer named by ``method`` for ``model``.

    Parameters
    ----------
    model : keras model mapping (n, S, S, 1) float32 to (n, 1) sigmoid P(tumour).
    method : one of :data:`METHODS`.
    image_size : S, the side of the square model input.
    num_samples : LIME's number of perturbed images (ignored by Grad-CAM).
    seed : LIME's random seed (ignored by Grad-CAM, which is deterministic).
    network : the bundle's ONNX network (``ModelBundle.network``), which scan predicts with. LIME
        queries it instead of ``model`` when given; Grad-CAM needs gradients, so it always uses ``model``.
    """
    if method == "lime":
        return LimeExplainer(model, image_size, num_samples=num_samples, seed=seed, network=network)
    if method == "gradcam":
        from mriscan.explain.keras_explain import GradCamExplainer

        return GradCamExplainer(model, image_size)
    raise ExplainError(f"Unknown explanation method. Expected one of {METHODS}; received: method={method!r}")


def method_needs_keras(method: str) -> bool:
    """Whether ``method`` needs the Keras model even when the bundle has a network file (Grad-CAM's gradients).

    Examples
    --------
    >>> method_needs_keras("lime"), method_needs_keras("gradcam")
    (False, True)
    """
    return method != "lime"


def bundle_explainer(bundle: ModelBundle, method: str, *, num_samples: int = 1000, seed: int = 2021) -> Explainer:
    """The explainer ``method`` for a model bundle, as ``mriscan explain`` builds it.

    LIME queries the bundle's network file when it has one, and then needs no Keras model (the
    bundle may be loaded with ``keras=False``); Grad-CAM, and LIME on a bundle without a network
    file, use the Keras model.
    """
    keras_model = bundle.inference_model if method_needs_keras(method) or bundle.network is None else None
    return make_explainer(keras_model, method, image_size=bundle.preprocess_config.image_size,
                          num_samples=num_samples, seed=seed, network=bundle.network)
