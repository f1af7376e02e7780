"""ONNX export of the flow-matching action head and an ONNX Runtime backend for it.

What is exported: the whole N-step Euler sampler (:class:`jala_policy.action_head.EulerSampler`), not one
velocity step. Inputs ``embeddings`` (1, n_ctx, context_dim), ``state`` (1, state_dim), ``noise``
(1, horizon, action_dim), output ``actions`` (1, horizon, action_dim), all float32. Why the whole sampler:
- one ONNX Runtime call per chunk instead of N, so no per-step Python, input copies or session overhead;
- the cross-attention keys/values of the embeddings are computed once inside the graph and reused by all N steps
  (a one-step export would either recompute them every step or need 16 extra key/value inputs);
- the flow times t = i/N are constants of the unrolled graph, so their timestep embeddings fold to constants.
The cost is that N (``ActionHeadConfig.num_inference_steps``) is fixed at export; it is stored in the model's
metadata and :class:`OnnxActionHead` refuses a file whose N or sizes differ from the head's config.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``: it exports the tiny head in about 2 s
against about 25 s for ``dynamo=True`` and needs neither onnxscript nor torch.export support of the model; the
graph is checked against eager torch in tests/policy/test_fast_inference.py. Models over 2 GB (the 944 M ``paper``
head in float32) are written with external data next to the .onnx file by the exporter.

Runtime: ``onnxruntime`` (CPU) from requirements.txt; on a GPU machine ``onnxruntime-gpu[cuda,cudnn]`` replaces
it and the TensorRT / CUDA execution providers are used when present (inputs and output then stay on the GPU
through I/O binding).
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from .action_head import EulerSampler, FlowMatchingActionHead

INPUT_NAMES = ("embeddings", "state", "noise")
OUTPUT_NAME = "actions"
ONNX_OPSET = 17
METADATA_KEY = "jala_action_head"


def _example_inputs(head: FlowMatchingActionHead, context_len: int, context_dim: int,
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c = head.config
    return (torch.zeros((1, context_len, context_dim), device=device),
            torch.zeros((1, c.state_dim), device=device),
            torch.zeros((1, c.action_horizon, c.action_dim), device=device))


def head_signature(head: FlowMatchingActionHead, context_len: int, context_dim: int) -> dict:
    """What an exported file is valid for: the head's sizes, N and the context shape."""
    c = head.config
    return {"num_steps": c.num_inference_steps, "action_horizon": c.action_horizon, "action_dim": c.action_dim,
            "state_dim": c.state_dim, "hidden_size": c.hidden_size, "num_layers": c.num_layers,
            "context_len": int(context_len), "context_dim": int(context_dim)}


def export_action_head(head: FlowMatchingActionHead, path: str | Path, *, context_len: int, context_dim: int,
                       dtype: torch.dtype = torch.float32, export_params: bool = True) -> Path:
    """Write the head's Euler sampler to ``path`` (.onnx) and return it.

    The head is copied to the CPU in ``dtype`` for tracing (float32 for the CPU provider, float16 for CUDA /
    TensorRT: ONNX Runtime's bfloat16 kernels are sparse); the graph's inputs and output stay float32.
    ``export_params=False`` writes the graph only, with the weights as extra inputs (shape / graph checks of
    real-size heads without writing gigabytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu_head = copy.deepcopy(head).to(device="cpu", dtype=dtype).eval() if _needs_copy(head, dtype) else head.eval()
    sampler = EulerSampler(cpu_head)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about Python floats in the unrolled loop
        torch.onnx.export(sampler, _example_inputs(cpu_head, context_len, context_dim), str(path), dynamo=False,
                          export_params=export_params, opset_version=ONNX_OPSET, input_names=list(INPUT_NAMES),
                          output_names=[OUTPUT_NAME], do_constant_folding=True)
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(head_signature(head, context_len, context_dim))
    onnx.save(model, str(path))
    return path


def _needs_copy(head: FlowMatchingActionHead, dtype: torch.dtype) -> bool:
    w = head.action_encoder.weight
    return w.device.type != "cpu" or w.dtype != dtype


def execution_providers(device: torch.device) -> list[str]:
    """ONNX Runtime providers for ``device``: TensorRT, CUDA, CPU on a CUDA device (those installed), else CPU."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if device.type == "cuda" else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


class OnnxActionHead:
    """Runs an exported Euler sampler with ONNX Runtime; called like ``FlowMatchingActionHead.denoise``."""

    def __init__(self, path: str | Path, head: FlowMatchingActionHead, *, context_len: int, context_dim: int,
                 device: torch.device | str = "cpu", num_threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        self.device = torch.device(device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # no busy-waiting worker threads between calls: they would take the cores torch needs for the backbone
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.path), options, providers=execution_providers(self.device))
        stored = json.loads(self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "null"))
        expected = head_signature(head, context_len, context_dim)
        if stored != expected:
            raise ValueError(f"{self.path} was exported for {stored}, not for this head {expected}: export it again")
        c = head.config
        self.output_shape = (1, c.action_horizon, c.action_dim)
        self.on_gpu = self.device.type == "cuda" and self.session.get_providers()[0] != "CPUExecutionProvider"

    @classmethod
    def export(cls, head: FlowMatchingActionHead, path: str | Path, *, context_len: int, context_dim: int,
               device: torch.device | str = "cpu") -> "OnnxActionHead":
        """Export ``head`` to ``path`` (float16 weights for a CUDA device, float32 otherwise) and load it."""
        device = torch.device(device)
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        export_action_head(head, path, context_len=context_len, context_dim=context_dim, dtype=dtype)
        return cls(path, head, context_len=context_len, context_dim=context_dim, device=device)

    def __call__(self, embeddings: torch.Tensor, state: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Normalised actions (1, horizon, action_dim) float32 on ``self.device``."""
        inputs = [x.float().contiguous() for x in (embeddings, state, noise)]
        if self.on_gpu:
            return self._run_bound(inputs)
        feeds = {name: x.cpu().numpy() for name, x in zip(INPUT_NAMES, inputs)}
        out = self.session.run([OUTPUT_NAME], feeds)[0]
        return torch.from_numpy(out).to(self.device)

    def _run_bound(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """CUDA: bind torch's device buffers directly (no host round trip)."""
        out = torch.empty(self.output_shape, dtype=torch.float32, device=self.device)
        binding = self.session.io_binding()
        index = self.device.index or 0
        for name, x in zip(INPUT_NAMES, inputs):
            binding.bind_input(name, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cuda", index, np.float32, self.output_shape, out.data_ptr())
        torch.cuda.current_stream(self.device).synchronize()  # inputs written by torch's stream
        self.session.run_with_iobinding(binding)
        return out
