"""The explainers' Keras side: LIME's forward pass for a bundle without a network file, and Grad-CAM.

Kept apart from :mod:`mriscan.explain.lime` and :mod:`mriscan.explain.factory` because it needs
TensorFlow, whose import is slow and memory-hungry: LIME on a bundle's network
file (what ``mriscan explain`` runs by default) never imports it.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
import tensorflow as tf

from mriscan.errors import ExplainError
from mriscan.explain.base import Explanation, brain_region, grey_input

# The forward pass runs in chunks of this many images, which bounds activation memory (the seed
# network holds 2.8 MB per 150x150 image after its first layer: 0.7 GB for 256 images, 90 MB for
# 32) and is no slower than whole LIME batches.
_INFERENCE_CHUNK = 32


class CompiledProbabilities:
    """Callable (n, S, S, 1) float32 -> (n,) P(tumour): ``model`` as a traced ``tf.function``.

    ``model.predict`` costs tens of milliseconds of set-up per call and eager ``model(x)``
    re-dispatches every layer; a traced function does neither, and threads can share it.
    """

    def __init__(self, model: keras.Model, image_size: int) -> None:
        spec = tf.TensorSpec((None, image_size, image_size, 1), tf.float32)
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self.image_size = image_size
        # Trace now: a model whose input does not match fails here, before any image is read.
        self(np.zeros((1, image_size, image_size, 1), np.float32))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Return P(tumour) for each image of ``batch``."""
        chunks = [
            self._forward(batch[start : start + _INFERENCE_CHUNK]).numpy()
            for start in range(0, len(batch), _INFERENCE_CHUNK)
        ]
        output = np.concatenate(chunks)
        if output.size != len(batch):
            raise ExplainError(
                "The model must output one probability per image (shape (n, 1)); "
                f"received: output shape {output.shape} for {len(batch)} images"
            )
        return output.reshape(-1).astype(np.float64)


class GradCamExplainer:
    """Signed Grad-CAM on the last Conv2D layer, toward the tumour logit.

    The map is ``sum_k alpha_k A_k`` with ``alpha_k`` the spatial mean of d(logit)/d(A_k),
    without Grad-CAM's final ReLU: its positive part is Grad-CAM for "tumour" and its negative
    part is Grad-CAM for "no tumour", because with one sigmoid output the no-tumour logit is
    exactly minus the tumour logit. The logit is taken before the output sigmoid so saturated
    probabilities (0.9999...) still give a map. The map is resized to the input bilinearly.

    Like LIME's, the explanation counts inside the brain only
    (:func:`~mriscan.explain.base.brain_region`): the map is 0 on skull, scalp and background, so an
    overlay, which scales its colours to the largest weight, never colours them and scales to the
    brain's largest weight. The last convolution sees the whole input, skull included, and its
    coarse map spills over the brain's edge, where no tumour is.

    Parameters
    ----------
    model : keras Sequential or functional model with a Conv2D layer at its top level.
    image_size : S.
    """

    method = "gradcam"

    def __init__(self, model: keras.Model, image_size: int) -> None:
        conv_layer = last_conv_layer(model)
        graph = _conv_and_head_inputs(model, conv_layer, image_size)
        head = model.layers[-1]
        spec = tf.TensorSpec((1, image_size, image_size, 1), tf.float32)
        self._cam = tf.function(lambda x: _signed_cam(graph, head, x), input_signature=[spec])
        self.image_size, self.layer_name = image_size, conv_layer.name

    def explain(self, image: np.ndarray) -> Explanation:
        """Explain one (S, S, 1) model input; see :class:`Explanation`. Weights are 0 outside the brain."""
        whole, probability = self.whole_input_map(image)
        weights = np.where(brain_region(image), whole, 0.0).astype(np.float32)
        details = f"Grad-CAM on layer {self.layer_name}"
        return Explanation(weights, None, probability, "gradcam", details)

    def whole_input_map(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Return (the signed map over the whole (S, S) input, P(tumour)): :meth:`explain` before the brain.

        Public so that a benchmark can compare with what Grad-CAM showed before it kept to the brain.
        """
        batch = grey_input(image)[np.newaxis, :, :, np.newaxis]
        cam, probability = (tensor.numpy() for tensor in self._cam(batch))
        size = (self.image_size, self.image_size)
        return cv2.resize(cam.astype(np.float32), size, interpolation=cv2.INTER_LINEAR), float(probability)


def last_conv_layer(model: keras.Model) -> keras.layers.Layer:
    """The last 2-D convolution among the model's top-level layers.

    Raises
    ------
    ExplainError
        When the model has none (for example a pretrained base nested as one layer).
    """
    conv_types = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)
    for layer in reversed(model.layers):
        if isinstance(layer, conv_types):
            return layer
    names = [layer.name for layer in model.layers]
    raise ExplainError(
        f"Grad-CAM needs a Conv2D layer at the top level of the model; received layers {names}. "
        "Use the LIME method for this model."
    )


def _conv_and_head_inputs(model: keras.Model, conv_layer: keras.layers.Layer, image_size: int) -> keras.Model:
    """A model mapping the input to (conv activations, input of the output layer).

    Keras 3 Sequential models expose no usable intermediate outputs, so their layers are
    re-applied to a fresh ``keras.Input``; functional models already have a graph.
    """
    if not isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, [conv_layer.output, model.layers[-1].input])
    inputs = keras.Input(shape=(image_size, image_size, 1))
    tensor, conv_output = inputs, None
    for layer in model.layers[:-1]:
        tensor = layer(tensor)
        if layer is conv_layer:
            conv_output = tensor
    return keras.Model(inputs, [conv_output, tensor])


def _signed_cam(graph: keras.Model, head: keras.layers.Layer, batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Return (signed CAM at conv resolution, P(tumour)) for a batch of one image."""
    with tf.GradientTape() as tape:
        activations, head_input = graph(batch, training=False)
        logit = tf.reshape(_tumour_logit(head, head_input), [-1])
    gradients = tape.gradient(logit, activations)
    channel_weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.reduce_sum(channel_weights * activations, axis=-1)[0]
    return cam, tf.sigmoid(logit[0])


def _tumour_logit(head: keras.layers.Layer, head_input: tf.Tensor) -> tf.Tensor:
    """The tumour logit: the output layer's value before its sigmoid."""
    sigmoid = keras.activations.sigmoid
    if isinstance(head, keras.layers.Dense) and head.activation is sigmoid:
        logit = keras.ops.matmul(head_input, head.kernel)
        return logit + head.bias if head.use_bias else logit
    if isinstance(head, keras.layers.Activation) and head.activation is sigmoid:
        return head_input
    probability = keras.ops.clip(head(head_input), 1e-7, 1.0 - 1e-7)
    return keras.ops.log(probability) - keras.ops.log1p(-probability)
