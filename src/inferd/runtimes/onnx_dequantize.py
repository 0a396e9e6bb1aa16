"""Which weight-only quantized ONNX models have their weights dequantized in the shared copy.

A model whose only quantized tensors are weights (int8 initializers that ``DequantizeLinear``
turns into floats, activations in float) is dequantized by a plain onnxruntime load on every
request, into each replica's own memory; the shared copy (``onnx_shared``) holds those weights
dequantized once instead, with the same answers. Only where the plain load does dequantize them:
onnxruntime fuses some such weights into kernels of its own, whose answers the floats would not give.
"""

from __future__ import annotations

from pathlib import Path

QUANTIZED = frozenset({2, 3, 4, 5, 6})  # onnx's UINT8, INT8, UINT16, INT16, INT32
PACKED_OPS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose"})  # kernels that pre-pack weights


def dequantized_each_run(model_path: Path, optimized: Path) -> bool:
    """Whether the plain load (as ``optimized`` shows it) still dequantizes every weight that
    ``model_path`` dequantizes: onnxruntime fuses some DequantizeLinear -> MatMul pairs into its
    own kernels (a MatMulNBits of 8 bits, int8 arithmetic), whose answers the dequantized floats
    would not give."""
    import onnx

    def dequantized(path: Path) -> set[str]:
        graph = onnx.load(str(path), load_external_data=False).graph
        return {node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}

    return dequantized(model_path) <= dequantized(optimized)


def weight_only_quantized(model_path: Path) -> bool:
    """Whether the model's only quantized tensors are weights (8, 16 or 32-bit initializers that
    ``DequantizeLinear`` nodes turn into floats), its activations float: onnxruntime keeps such
    nodes to fuse them with quantized activations, so without any it dequantizes on every run."""
    try:
        import onnx

        graph = onnx.load(str(model_path), load_external_data=False).graph
    except Exception:  # no onnx package, or a model the converter reports
        return False
    types = {init.name: init.data_type for init in graph.initializer}
    ops = [node.op_type for node in graph.node]
    dequantized = [node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"]
    # float weights multiplied directly would lose their pre-packing, and the answers their bits
    packed = [node.input[1] for node in graph.node if node.op_type in PACKED_OPS and len(node.input) > 1]
    return (
        bool(dequantized)
        and "QuantizeLinear" not in ops
        and "DynamicQuantizeLinear" not in ops
        and all(types.get(name) in QUANTIZED for name in dequantized)
        and not any(name in types and types[name] not in QUANTIZED for name in packed)
    )
