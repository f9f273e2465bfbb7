"""Export the trained GRU to ONNX as explicit MatMul ops, and int8-quantize it.

The graph is hand-built from the weights (numpy arrays in PyTorch's GRU convention, gate order
r, z, n): each GRU layer's input projection is one MatMul over all time steps, and the
recurrence is unrolled over the window with one MatMul per step against a shared ``W_hh``.
Unlike the ONNX ``GRU`` op, these MatMuls are quantized by
``onnxruntime.quantization.quantize_dynamic`` (int8 weights, dynamic uint8 activations).

Graph input ``windows`` float32 (N, window, features); outputs ``probs`` (N, classes, softmax)
and ``logits``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

OPSET = 17


def build_onnx(weights: dict[str, np.ndarray], window: int, n_features: int, n_classes: int,
               doc: str = "") -> "onnx.ModelProto":  # noqa: F821
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    counter = [0]

    def name(prefix):
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def const(arr, prefix="c"):
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.array(arr, order="C"), n))
        return n

    def node(op, inputs, n_out=1, **attrs):
        outs = [name("t") for _ in range(n_out)]
        nodes.append(helper.make_node(op, inputs, outs, **attrs))
        return outs[0] if n_out == 1 else outs

    i64 = lambda v: np.asarray(v, np.int64)  # noqa: E731
    split_cache: dict = {}

    def split(x, sizes, axis=-1):
        key = (tuple(sizes), axis)
        if key not in split_cache:
            split_cache[key] = const(i64(sizes), "split")
        return node("Split", [x, split_cache[key]], n_out=len(sizes), axis=axis)

    def gru_layer(x_seq, prefix, layer):
        """x_seq (N, T, I) -> list of T hidden states (N, 1, H)."""
        W_ih = weights[f"{prefix}.weight_ih_l0"].astype(np.float32)  # (3H, I)
        W_hh = weights[f"{prefix}.weight_hh_l0"].astype(np.float32)  # (3H, H)
        b_ih = weights[f"{prefix}.bias_ih_l0"].astype(np.float32)
        b_hh = weights[f"{prefix}.bias_hh_l0"].astype(np.float32)
        H = W_hh.shape[1]
        # r and z see b_ih + b_hh; n sees b_in outside and b_hn inside r * (...)
        b_x = np.concatenate([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:]])
        wi = const(W_ih.T, f"gru{layer}_W_ih_T")
        wh = const(W_hh.T, f"gru{layer}_W_hh_T")
        bx = const(b_x, f"gru{layer}_b_x")
        bh_n = const(b_hh[2 * H:], f"gru{layer}_b_hn")
        xp = node("Add", [node("MatMul", [x_seq, wi]), bx])  # (N, T, 3H): input projection, all steps
        steps = split(xp, [1] * window, axis=1)  # T x (N, 1, 3H)
        h = None
        outs = []
        for t in range(window):
            x_rz, x_n = split(steps[t], [2 * H, H])
            if h is None:  # h0 = 0, so W_hh h0 = 0
                r, z = split(node("Sigmoid", [x_rz]), [H, H])
                n = node("Tanh", [node("Add", [x_n, node("Mul", [r, bh_n])])])
                h = node("Sub", [n, node("Mul", [z, n])])
            else:
                g_rz, g_n = split(node("MatMul", [h, wh]), [2 * H, H])
                r, z = split(node("Sigmoid", [node("Add", [x_rz, g_rz])]), [H, H])
                n = node("Tanh", [node("Add", [x_n, node("Mul", [r, node("Add", [g_n, bh_n])])])])
                # h' = (1 - z) * n + z * h = n + z * (h - n)
                h = node("Add", [n, node("Mul", [z, node("Sub", [h, n])])])
            outs.append(h)
        return outs

    seq1 = gru_layer("windows", "gru1", 1)
    seq = node("Concat", seq1, axis=1)  # (N, T, 128)
    h2 = gru_layer(seq, "gru2", 2)[-1]  # (N, 1, 64)
    h2 = node("Squeeze", [h2, const(i64([1]), "axis")])
    d1 = node("Relu", [node("Add", [node("MatMul", [h2, const(weights["fc1.weight"].T.astype(np.float32), "fc1_W_T")]),
                                    const(weights["fc1.bias"].astype(np.float32), "fc1_b")])])
    logits = node("Add", [node("MatMul", [d1, const(weights["fc2.weight"].T.astype(np.float32), "fc2_W_T")]),
                          const(weights["fc2.bias"].astype(np.float32), "fc2_b")])
    nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1))
    graph = helper.make_graph(
        nodes, "gru_har",
        [helper.make_tensor_value_info("windows", TensorProto.FLOAT, ["N", window, n_features])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", n_classes]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="models.action.export", doc_string=doc)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return compact_names(model)


def save_onnx(model, path) -> Path:
    import onnx
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def compact_names(model):
    """Rename every internal tensor to a short name and drop node names (graph overhead is a large
    share of a ~100k-parameter model's file once the weights are int8). Graph inputs/outputs keep
    their names."""
    import onnx
    g = model.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    mapping: dict[str, str] = {}

    def m(n):
        if not n or n in keep:
            return n
        if n not in mapping:
            mapping[n] = format(len(mapping), "x")
        return mapping[n]

    for init in g.initializer:
        init.name = m(init.name)
    for nd in g.node:
        nd.name = ""
        nd.doc_string = ""
        for i, n in enumerate(nd.input):
            nd.input[i] = m(n)
        for i, n in enumerate(nd.output):
            nd.output[i] = m(n)
    del g.value_info[:]
    onnx.checker.check_model(model)
    return model


def quantize_int8(fp32_path, int8_path, per_channel: bool = False) -> Path:
    """Dynamic int8 quantization of every MatMul weight (onnxruntime.quantization), then compaction."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    int8_path = Path(int8_path)
    logging.getLogger().setLevel(logging.ERROR)  # the pre-processing hint is irrelevant here
    quantize_dynamic(str(fp32_path), str(int8_path), op_types_to_quantize=["MatMul"],
                     weight_type=QuantType.QInt8, per_channel=per_channel)
    onnx.save(compact_names(onnx.load(str(int8_path))), str(int8_path))
    return int8_path
