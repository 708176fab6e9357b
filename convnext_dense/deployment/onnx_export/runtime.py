"""Running an exported graph with onnxruntime (:func:`run_onnx`) and describing the file
(:func:`onnx_summary`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def run_onnx(onnx_file: str, image: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """Run an exported graph with onnxruntime on the CPU: ``{output name: array}``."""
    import onnxruntime as ort
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    session = ort.InferenceSession(str(onnx_file), providers=['CPUExecutionProvider'])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {'image': image.astype(np.float32)})))


def onnx_summary(onnx_file: str) -> dict:
    """What an exported file holds: size, opset, inputs and outputs (name and shape, symbolic
    dimensions by name) and the count of each operator."""
    import onnx
    graph_model = onnx.load(str(onnx_file), load_external_data=False)

    def shapes(values):
        return {value.name: [dim.dim_param or dim.dim_value
                             for dim in value.type.tensor_type.shape.dim] for value in values}

    operators: dict[str, int] = {}
    for node in graph_model.graph.node:
        operators[node.op_type] = operators.get(node.op_type, 0) + 1
    opset = next(o.version for o in graph_model.opset_import if o.domain in ('', 'ai.onnx'))
    return dict(size_mb=Path(onnx_file).stat().st_size / 2**20, opset=opset,
                inputs=shapes(graph_model.graph.input),
                outputs=shapes(graph_model.graph.output), operators=operators)
