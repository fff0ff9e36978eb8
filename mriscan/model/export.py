"""The folded network written as an ONNX file (fp32 or int8): what ``scan`` runs (:mod:`mriscan.model.runtime`).

Importing TensorFlow and Keras is most of a scan's start-up and half of its memory; ONNX Runtime
imports much faster and runs this network in about the same CPU time or less (docs/performance.md).
``fit`` therefore saves, beside ``model.keras``, the same network with BatchNormalization folded
(``mriscan/model/fold.py``) as ``model.onnx``, checks that both give the same outputs, and records the
file's sha256 in the card (``network_file``). ``scan`` verifies that hash, as it verifies
``model.keras`` against ``model_id``, and loads the file with ONNX Runtime, which runs only the
standard operators of the graph and no code from the file.

Only plain chains of the layers mriscan's architectures use can be exported; anything else is
refused with a ModelBundleError, and such a bundle is scanned with Keras as before.

``fit`` deploys the network in int8 (:func:`quantize_onnx`): weights int8 (7-bit range) per
channel, activations uint8 with ranges measured on training images, the first convolution and the
output layer left in fp32. It costs less than half the CPU of fp32 but moves probabilities a
little (docs/performance.md), so fit chooses the temperature and
thresholds on this network's own outputs, and the card records its precision and its largest
difference from Keras. ``save_bundle`` without a network file, and ``add_network_file`` (for
bundles whose thresholds were chosen on Keras), write fp32.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mriscan.errors import ModelBundleError
from mriscan.io.hashing import bytes_sha256
from mriscan.model.runtime import INPUT_NAME, ONNX_FILE, OnnxNetwork

OPSET = 13
MAX_DIFFERENCE = 1e-4
"""Largest difference allowed between the Keras and fp32 ONNX outputs when a file is written."""
MAX_INT8_DIFFERENCE = 0.1
"""Largest difference allowed between the Keras and int8 outputs: beyond it the quantization is broken."""
FP32, INT8 = "fp32", "int8, first convolution and output layer fp32"
"""The precisions a network file is written in, as its card entry names them."""
_OUTPUT = "probability"
_CALIBRATION_BATCH = 32


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
    graph.node("Transpose", [INPUT_NAME], perm=[0, 3, 1, 2])  # NHWC in, as Keras; NCHW inside
    _check_chain(model)
    for layer in model.layers:
        _translate(layer, graph)
    graph.node("Identity", [graph.current], name=_OUTPUT)
    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, *model.input_shape[1:]])]
    outputs = [helper.make_tensor_value_info(_OUTPUT, TensorProto.FLOAT, [None, model.output_shape[-1]])]
    proto = helper.make_model(helper.make_graph(graph.nodes, model.name, inputs, outputs, graph.initializers),
                              opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mriscan")
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _check_chain(model: Any) -> None:
    """Refuse a network whose layers are not one chain in ``model.layers`` order.

    A Sequential model is one by construction. A functional one is when each layer is called once
    (Keras' private ``_inbound_nodes``, as ``mriscan/model/fold.py`` reads) on the previous one's output.
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
        self.current = INPUT_NAME
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


def quantize_onnx(data: bytes, calibration_images: np.ndarray) -> bytes:
    """The int8 version of the fp32 network ``data``, its activation ranges measured on ``calibration_images``.

    Static quantization by ONNX Runtime in QDQ form (standard ONNX operators only): weights int8
    per output channel, activations uint8 with the min-max ranges of the calibration images (an
    NHWC float32 batch, as the network takes). The first convolution (one input channel, 5x5,
    stride 2 in ``compact``) stays fp32: in int8 it would cost more, while nearly every other layer
    gets cheaper. The output layer (Gemm, Sigmoid) stays fp32 too: in uint8 it would round the
    probabilities to steps of 1/255. QDQ is used rather than QOperator: the same kernels, with
    standard operators only.

    Weights use 7 bits (``reduce_range``): on CPUs without VNNI, ONNX Runtime multiplies uint8 by
    int8 with an instruction whose 16-bit pair sums can saturate with full 8-bit weights, so a
    hospital's older machine could compute other probabilities than the ones the thresholds were
    chosen on; with 7-bit weights no sum saturates and every CPU computes the same integers, at the
    same speed and accuracy (docs/performance.md).

    The same bytes and images give the same bytes: the card pins the result's sha256.

    Raises
    ------
    ModelBundleError
        When there are no calibration images or ONNX Runtime cannot quantize the network.
    """
    import onnx

    if len(calibration_images) == 0:
        raise ModelBundleError("no calibration images: the int8 network needs training images to set its ranges")
    proto = onnx.load_from_string(data)
    for node in proto.graph.node:
        node.name = node.name or node.output[0]  # nodes_to_exclude finds nodes by name
    kept_fp32 = [node.name for node in proto.graph.node if node.op_type == "Conv"][:1] + [
        node.name for node in proto.graph.node if node.op_type in ("Gemm", "Sigmoid")]
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with tempfile.TemporaryDirectory(prefix="mriscan-quantize-") as folder:
            fp32, prepared, int8 = (Path(folder) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
            onnx.save(proto, fp32)
            quant_pre_process(fp32, prepared, skip_symbolic_shape=True)  # symbolic shapes need sympy; not here
            quantize_static(prepared, int8, _CalibrationBatches(calibration_images), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=kept_fp32)
            return int8.read_bytes()
    except Exception as error:  # ONNX Runtime's quantizer raises many types
        raise ModelBundleError(f"the network could not be quantized ({type(error).__name__}: "
                               f"{str(error)[:300]})") from error


class _CalibrationBatches:
    """ONNX Runtime's calibration data reader: the images in fixed batches, each once."""

    def __init__(self, images: np.ndarray) -> None:
        images = np.ascontiguousarray(images, np.float32)
        self._batches = iter([{INPUT_NAME: images[i : i + _CALIBRATION_BATCH]}
                              for i in range(0, len(images), _CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def network_file_entry(model: Any, data: bytes, *, precision: str = FP32, check_images: np.ndarray | None = None,
                       seed: int = 0) -> dict[str, Any]:
    """The card's ``network_file`` entry, after checking that ``data`` computes what ``model`` does.

    The outputs are compared on ``check_images`` (by default 8 random images, enough for fp32;
    an int8 network needs images like those it will see, whose ranges it was calibrated on).

    Raises
    ------
    ModelBundleError
        When the outputs differ by more than :data:`MAX_DIFFERENCE` (fp32) or
        :data:`MAX_INT8_DIFFERENCE` (int8), or the network does not run.
    """
    images = check_images if check_images is not None else (
        np.random.default_rng(seed).uniform(0, 1, (8, *model.input_shape[1:])).astype(np.float32))
    try:
        exported = OnnxNetwork(data)(images)
    except Exception as error:  # ONNX Runtime's own types: a graph that does not run
        raise ModelBundleError(f"the ONNX network does not run ({type(error).__name__}); not saved") from error
    difference = float(np.abs(exported - np.asarray(model.predict_on_batch(images))).max())
    bound = MAX_DIFFERENCE if precision == FP32 else MAX_INT8_DIFFERENCE
    if not difference <= bound:
        raise ModelBundleError(f"the {precision} ONNX network differs from the Keras one by {difference:.2g} on "
                               f"{len(images)} check images (at most {bound:g} expected); not saved. For int8 this "
                               "means its quantization failed: save the network in fp32 instead")
    return {"name": ONNX_FILE, "sha256": bytes_sha256(data), "format": f"ONNX opset {_opset(data)}",
            "precision": precision, "batch_normalization": "folded into the convolutions",
            "max_difference_from_keras": float(f"{difference:.3g}"), "check_images": len(images)}


def _opset(data: bytes) -> int:
    import onnx

    return next(o.version for o in onnx.load_from_string(data).opset_import if o.domain in ("", "ai.onnx"))


@dataclass(frozen=True)
class NetworkFile:
    """A network file's bytes and the card entry that describes and pins them."""

    data: bytes
    entry: dict[str, Any]


def make_network_file(model: Any, calibration_images: np.ndarray | None = None,
                      check_images: np.ndarray | None = None) -> NetworkFile:
    """``model`` (the folded network) as a network file: fp32, or int8 when given calibration images.

    The int8 network is checked against Keras on ``check_images`` (by default the calibration images).

    Raises
    ------
    ModelBundleError
        When the network has no ONNX translation, cannot be quantized, or differs too much from Keras.
    """
    data = export_onnx(model)
    if calibration_images is None:
        return NetworkFile(data, network_file_entry(model, data))
    return _int8_network_file(model, data, calibration_images, check_images)


def _int8_network_file(model: Any, data: bytes, calibration_images: np.ndarray,
                       check_images: np.ndarray | None) -> NetworkFile:
    """The exported fp32 network ``data`` quantized, checked against ``model`` and described for the card."""
    quantized = quantize_onnx(data, calibration_images)
    checks = check_images if check_images is not None and len(check_images) else calibration_images
    entry = network_file_entry(model, quantized, precision=INT8, check_images=checks)
    entry["quantization"] = (f"static (QDQ): weights int8 (7-bit range) per channel, activations uint8 in "
                             f"the min-max ranges of {len(calibration_images)} training images")
    return NetworkFile(quantized, entry)


def network_for_scan(model: Any, calibration_images: np.ndarray, check_images: np.ndarray) -> NetworkFile | None:
    """The network file ``fit`` deploys: int8; fp32 when int8 is refused (the reason in the entry's
    ``int8_refused``); None when the network has no ONNX translation (the bundle is scanned with Keras).
    """
    try:
        data = export_onnx(model)  # once: the fp32 fallback reuses it
    except ModelBundleError:
        return None
    try:
        return _int8_network_file(model, data, calibration_images, check_images)
    except ModelBundleError as error:
        refusal = str(error)
    try:
        entry = network_file_entry(model, data)
    except ModelBundleError:
        return None
    return NetworkFile(data, {**entry, "int8_refused": refusal})


