#!/usr/bin/env python3
"""The ceiling of a MiniLM-L6 cross-encoder's dense layers on this CPU: the
model's own matrix products (per layer Q, K, V and output 384x384, FFN
384x1536 and 1536x384; six layers), alone in an ONNX graph, run through
ONNX Runtime in fp32 and dynamically quantized to int8 (signed and unsigned
weights), one thread, at the profiles' sequence lengths, one sequence per run
and batches of 32. Attention, LayerNorm and GELU are left out, so the graph's
tokens/s bound what the whole model can reach from above.

    .venv-st/bin/python benches/matmul_ceiling.py models/crossflow-sts-minilm-l6/config.json \
        > benches/results/matmul-ceiling.md
"""
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

SEQUENCES = {"short": 32, "medium": 64, "long": 128}
BATCHES = (1, 32)


def dense_graph(hidden, ffn, layers, path):
    """Six layers of the model's dense products with random weights, chained
    through a residual so that every product sees real activations."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    shapes = [(hidden, 3 * hidden), (hidden, hidden), (hidden, ffn), (ffn, hidden)]
    for layer in range(layers):
        names = [f"w{layer}_{i}" for i in range(4)]
        for name, shape in zip(names, shapes):
            weight = rng.normal(0, 0.05, shape).astype(np.float32)
            inits.append(numpy_helper.from_array(weight, name))
        qkv, attn, up, down, out = (f"{k}{layer}" for k in ("qkv", "attn", "up", "down", "out"))
        nodes += [
            helper.make_node("MatMul", [x, names[0]], [qkv]),
            helper.make_node("Slice", [qkv, "zero", "hidden", "last"], [f"q{layer}"]),
            helper.make_node("MatMul", [f"q{layer}", names[1]], [attn]),
            helper.make_node("MatMul", [attn, names[2]], [up]),
            helper.make_node("Tanh", [up], [f"act{layer}"]),
            helper.make_node("MatMul", [f"act{layer}", names[3]], [down]),
            helper.make_node("Add", [down, x], [out]),
        ]
        x = out
    inits += [numpy_helper.from_array(np.array([v], dtype=np.int64), n)
              for n, v in (("zero", 0), ("hidden", hidden), ("last", -1))]
    graph = helper.make_graph(
        nodes, "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", hidden])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", "seq", hidden])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, path)


def tokens_per_second(path, hidden, batch, seq, seconds=2.0):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(0, 1, (batch, seq, hidden)).astype(np.float32)
    session.run(None, {"x": x})
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, {"x": x})
        runs += 1
    return runs * batch * seq / (time.perf_counter() - start)


def cpu_line():
    info = Path("/proc/cpuinfo").read_text()
    model = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "unknown")
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    wanted = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{model} ({' '.join(wanted)}), {platform.machine()}"


def main():
    config = json.load(open(sys.argv[1]))
    hidden, ffn, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    macs = layers * (4 * hidden * hidden + 2 * hidden * ffn)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        dense_graph(hidden, ffn, layers, fp32)
        graphs = {"fp32": fp32}
        for name, weights in (("int8 (s8 weights)", QuantType.QInt8), ("int8 (u8 weights)", QuantType.QUInt8)):
            graphs[name] = Path(tmp) / f"{weights.name}.onnx"
            quantize_dynamic(fp32, graphs[name], weight_type=weights)
        print(f"CPU: {cpu_line()}; onnxruntime {ort.__version__}, one thread; "
              f"{macs / 1e6:.1f} M multiply-adds per token (dense layers only)\n")
        print("| graph | profile (tokens) | batch | tokens/s | GMAC/s |\n|---|---|---:|---:|---:|")
        for name, path in graphs.items():
            for profile, seq in SEQUENCES.items():
                for batch in BATCHES:
                    rate = tokens_per_second(path, hidden, batch, seq)
                    print(f"| {name} | {profile} ({seq}) | {batch} | {rate:,.0f} | {rate * macs / 1e9:.1f} |")


if __name__ == "__main__":
    main()
