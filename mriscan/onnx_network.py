"""The folded network as an ONNX file, run by ONNX Runtime: what ``scan`` predicts with.

Importing TensorFlow and Keras is most of a scan's start-up (3.5-4.5 s of ~5 s) and half of its
memory; ONNX Runtime imports in ~0.15 s and runs this network in about the same CPU time or less.
``fit`` therefore saves, beside ``model.keras``, the same network with BatchNormalization folded
(``mriscan/fold.py``) as ``model.onnx``, checks that both give the same outputs, and records the
file's sha256 in the card (``network_file``). ``scan`` verifies that hash, as it verifies
``model.keras`` against ``model_id``, and loads the file with ONNX Runtime, which runs only the
standard operators of the graph and no code from the file.

Only plain chains of the layers mriscan's architectures use can be exported; anything else is
refused with a ModelBundleError, and such a bundle is scanned with Keras as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mriscan.errors import ModelBundleError
from mriscan.hashing import bytes_sha256

ONNX_FILE = "model.onnx"
OPSET = 13
MAX_DIFFERENCE = 1e-4
"""Largest difference allowed between the Keras and ONNX outputs when a file is written."""
_INPUT, _OUTPUT = "image", "probability"


def export_onnx(model: Any) -> bytes:
    """The ONNX bytes of a Keras chain network (NHWC input, like the Keras model).

    Raises
    ------
    ModelBundleError
        When a layer or setting has no translation here (the bundle then keeps scanning with Keras).
    """
    import onnx
    from onnx import TensorProto, helper

    graph = _Graph(tuple(model.input_shape[1:3]))
    graph.node("Transpose", [_INPUT], perm=[0, 3, 1, 2])  # NHWC in, as Keras; NCHW inside
    _check_chain(model)
    for layer in model.layers:
        _translate(layer, graph)
    graph.node("Identity", [graph.current], name=_OUTPUT)
    inputs = [helper.make_tensor_value_info(_INPUT, TensorProto.FLOAT, [None, *model.input_shape[1:]])]
    outputs = [helper.make_tensor_value_info(_OUTPUT, TensorProto.FLOAT, [None, model.output_shape[-1]])]
    proto = helper.make_model(helper.make_graph(graph.nodes, model.name, inputs, outputs, graph.initializers),
                              opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mriscan")
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _check_chain(model: Any) -> None:
    """Refuse a network whose layers are not one chain in ``model.layers`` order.

    A Sequential model is one by construction. A functional one is when each layer is called once
    (Keras' private ``_inbound_nodes``, as ``mriscan/fold.py`` reads) on the previous one's output.
    """
    import keras

    if isinstance(model, keras.Sequential):
        return
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    for previous, layer in zip([None, *layers], layers, strict=False):
        follows = layer.input is model.input if previous is None else layer.input is previous.output
        if len(layer._inbound_nodes) != 1 or not follows:
            raise ModelBundleError(f"layer {layer.name!r} is not the next link of a chain: only chains are exported")


class _Graph:
    """Nodes and weights of the graph being built, and the current tensor's name and spatial size."""

    def __init__(self, spatial: tuple[int, int]) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.current = _INPUT
        self.spatial = spatial

    def weight(self, name: str, values: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(values, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str | None = None, **attributes: Any) -> None:
        from onnx import helper

        output = name or f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        self.current = output


def _translate(layer: Any, graph: _Graph) -> None:
    kind = type(layer).__name__
    if kind in ("InputLayer", "Identity", "Dropout"):
        return
    if kind == "Conv2D":
        _convolution(layer, graph)
    elif kind == "ReLU":
        if layer.max_value is not None or layer.negative_slope or layer.threshold:
            raise ModelBundleError(f"layer {layer.name!r}: only a plain ReLU is exported")
        graph.node("Relu", [graph.current])
    elif kind == "MaxPooling2D":
        _pooling(layer, graph)
    elif kind == "GlobalAveragePooling2D":
        if layer.keepdims or layer.data_format != "channels_last":
            raise ModelBundleError(f"layer {layer.name!r}: only channels-last pooling to a vector is exported")
        graph.node("GlobalAveragePool", [graph.current])
        graph.node("Flatten", [graph.current])
    elif kind == "Flatten":
        graph.node("Transpose", [graph.current], perm=[0, 2, 3, 1])  # Keras flattens in NHWC order
        graph.node("Flatten", [graph.current])
    elif kind == "Dense":
        kernel, bias = _kernel_and_bias(layer)
        graph.node("Gemm", [graph.current, graph.weight(f"{layer.name}/kernel", kernel),
                            graph.weight(f"{layer.name}/bias", bias)])
        _activation(layer, graph)
    else:
        raise ModelBundleError(f"layer {layer.name!r} ({kind}) has no ONNX translation here")


def _convolution(layer: Any, graph: _Graph) -> None:
    if tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1 or layer.data_format != "channels_last":
        raise ModelBundleError(f"layer {layer.name!r}: only plain channels-last convolutions are exported")
    kernel, bias = _kernel_and_bias(layer)
    pads = _pads(graph, kernel.shape[:2], tuple(layer.strides), layer.padding)
    graph.node("Conv", [graph.current, graph.weight(f"{layer.name}/kernel", kernel.transpose(3, 2, 0, 1)),
                        graph.weight(f"{layer.name}/bias", bias)],
               kernel_shape=list(kernel.shape[:2]), strides=list(layer.strides), pads=pads)
    _activation(layer, graph)


def _pooling(layer: Any, graph: _Graph) -> None:
    pool, strides = tuple(layer.pool_size), tuple(layer.strides)
    pads = _pads(graph, pool, strides, layer.padding)
    graph.node("MaxPool", [graph.current], kernel_shape=list(pool), strides=list(strides), pads=pads)


def _pads(graph: _Graph, kernel: tuple[int, int], strides: tuple[int, int], padding: str) -> list[int]:
    """ONNX pads (begin h, begin w, end h, end w) reproducing Keras' padding; updates the spatial size."""
    begins, ends, sizes = [], [], []
    for size, k, s in zip(graph.spatial, kernel, strides, strict=True):
        if padding == "same":
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            begins.append(total // 2)
            ends.append(total - total // 2)
        else:
            out = (size - k) // s + 1
            begins.append(0)
            ends.append(0)
        sizes.append(out)
    graph.spatial = (sizes[0], sizes[1])
    return begins + ends


def _kernel_and_bias(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    weights = layer.get_weights()
    bias = weights[1] if len(weights) > 1 else np.zeros(weights[0].shape[-1], np.float32)
    return weights[0], bias


def _activation(layer: Any, graph: _Graph) -> None:
    name = getattr(layer.activation, "__name__", str(layer.activation))
    if name == "relu":
        graph.node("Relu", [graph.current])
    elif name == "sigmoid":
        graph.node("Sigmoid", [graph.current])
    elif name != "linear":
        raise ModelBundleError(f"layer {layer.name!r}: activation {name!r} has no ONNX translation here")


class OnnxNetwork:
    """An ONNX Runtime session on one network file: NHWC float32 batch in, the network's output out."""

    def __init__(self, data: bytes, threads: int = 1) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Waiting threads sleep instead of spinning: loader processes need the cores meanwhile.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.data = data  # for worker processes, which build their own session from it

    @property
    def input_shape(self) -> tuple:
        """(None, height, width, channels), as Keras reports it."""
        return (None, *self._session.get_inputs()[0].shape[1:])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._session.run(None, {_INPUT: np.ascontiguousarray(images, np.float32)})[0]


def network_file_entry(model: Any, data: bytes, seed: int = 0) -> dict[str, Any]:
    """The card's ``network_file`` entry, after checking that ``data`` computes what ``model`` does.

    Raises
    ------
    ModelBundleError
        When the outputs differ by more than :data:`MAX_DIFFERENCE` on a random batch.
    """
    images = np.random.default_rng(seed).uniform(0, 1, (8, *model.input_shape[1:])).astype(np.float32)
    try:
        exported = OnnxNetwork(data)(images)
    except Exception as error:  # ONNX Runtime's own types: a graph that does not run
        raise ModelBundleError(f"the ONNX network does not run ({type(error).__name__}); not saved") from error
    difference = float(np.abs(exported - np.asarray(model.predict_on_batch(images))).max())
    if not difference <= MAX_DIFFERENCE:
        raise ModelBundleError(f"the ONNX network differs from the Keras one by {difference:.2g}; not saved")
    return {"name": ONNX_FILE, "sha256": bytes_sha256(data), "format": f"ONNX opset {OPSET}",
            "batch_normalization": "folded into the convolutions",
            "max_difference_from_keras": float(f"{difference:.3g}")}


def write_network_file(model: Any, folder: Path) -> dict[str, Any]:
    """Export ``model`` (the folded network) into ``folder`` and return its card entry."""
    data = export_onnx(model)
    entry = network_file_entry(model, data)
    (Path(folder) / ONNX_FILE).write_bytes(data)
    return entry


def load_network_file(directory: Path, card: Mapping[str, Any], threads: int = 1) -> OnnxNetwork | None:
    """The bundle's ONNX network, verified against the card; None when the bundle has none.

    Raises
    ------
    ModelBundleError
        When the file is missing, does not match its sha256 in the card, or cannot be loaded.
    """
    entry = card.get("network_file")
    if not entry:
        return None
    path = Path(directory) / Path(str(entry.get("name", ONNX_FILE))).name  # never outside the bundle
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelBundleError(f"{path} is missing or unreadable ({error.strerror}): the card lists it as the "
                               "network to scan with; restore the bundle or train a new one") from error
    if bytes_sha256(data) != entry.get("sha256"):
        raise ModelBundleError(f"{path} does not match its card: its sha256 differs from network_file.sha256 in "
                               "model.json. The file was damaged or swapped; restore the bundle or train a new one.")
    try:
        return OnnxNetwork(data, threads=threads)
    except Exception as error:  # ONNX Runtime raises its own types for files it cannot load
        raise ModelBundleError(f"{path} could not be loaded by ONNX Runtime ({type(error).__name__}: "
                               f"{str(error)[:300]})") from error
