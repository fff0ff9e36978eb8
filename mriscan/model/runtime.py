"""The network file at run time: an ONNX Runtime session on a bundle's verified ``model.onnx``.

Written by :mod:`mriscan.model.export`; ONNX Runtime runs only the standard operators of the graph
and no code from the file, and imports far faster than TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mriscan.errors import ModelBundleError
from mriscan.model.card import ONNX_FILE as ONNX_FILE  # the network file's default name, re-exported
from mriscan.model.card import NetworkFileEntry, read_pinned_file

INPUT_NAME = "image"
"""The name of the network's input in the graph."""
# ONNX Runtime would move the int8 network's first QuantizeLinear in front of the fp32 max pooling
# that follows the first convolution (exact: max commutes with rounding), where that pooling then
# runs on uint8 in a slow NCHW kernel (half the network's time). Outputs are the same either way.
_DISABLED_OPTIMIZERS = ["QDQPropagationTransformer"]


class OnnxNetwork:
    """An ONNX Runtime session on one network file: NHWC float32 batch in, the network's output out."""

    def __init__(self, data: bytes, threads: int = 1) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Waiting threads sleep instead of spinning: loader processes need the cores meanwhile.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"],
                                                     disabled_optimizers=_DISABLED_OPTIMIZERS)
        self.data = data  # for worker processes, which build their own session from it

    @property
    def input_shape(self) -> tuple:
        """(None, height, width, channels), as Keras reports it."""
        return (None, *self._session.get_inputs()[0].shape[1:])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._session.run(None, {INPUT_NAME: np.ascontiguousarray(images, np.float32)})[0]


def load_network_file(directory: Path, entry: NetworkFileEntry | None, threads: int = 1) -> OnnxNetwork | None:
    """The bundle's ONNX network, verified against its card entry; None when the card lists none.

    Raises
    ------
    ModelBundleError
        When the file is missing, does not match its sha256 in the card, or cannot be loaded.
    """
    if entry is None:
        return None
    data = read_pinned_file(directory, entry, "network_file", "the network to scan with")
    try:
        return OnnxNetwork(data, threads=threads)
    except Exception as error:  # ONNX Runtime raises its own types for files it cannot load
        raise ModelBundleError(f"{Path(directory) / entry.file_name} could not be loaded by ONNX Runtime "
                               f"({type(error).__name__}: {str(error)[:300]})") from error
