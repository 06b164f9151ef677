"""Tiny random decoders for the tests: the real code paths at a size that runs in a blink."""

from pathlib import Path

import numpy as np
import torch

from stepaudio.decoder.conformer import EncoderConfig
from stepaudio.decoder.estimator import EstimatorConfig
from stepaudio.decoder.flow import FlowConfig, FlowModel
from stepaudio.decoder.hift import HiFT, HiFTConfig

TINY_FLOW = FlowConfig(
    input_size=32,
    spk_embed_dim=16,
    sampling_ratios=(1,),
    encoder=EncoderConfig(32, 32, 2, 64, 2),
    estimator=EstimatorConfig(channels=(32, 32), attention_head_dim=16, n_blocks=1, num_mid_blocks=1, num_heads=2),
)
TINY_HIFT = HiFTConfig(
    base_channels=16,
    resblock_kernel_sizes=(3,),
    resblock_dilation_sizes=((1, 3),),
    source_resblock_dilation_sizes=((1, 3), (1, 3)),
    f0_cond_channels=16,
)


def tiny_flow() -> FlowModel:
    torch.manual_seed(0)
    return FlowModel(TINY_FLOW).eval()


def tiny_hift() -> HiFT:
    torch.manual_seed(1)
    return HiFT(TINY_HIFT).eval()


def write_campplus(path: Path, weights: np.ndarray) -> None:
    """An ONNX stand-in with CAMPPlus' interface: feats [1, T, 80] -> embedding [1, D], the maximum of
    each feature over time times weights [80, D]."""
    import onnx
    from onnx import TensorProto, helper

    feats = helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, None, 80])
    out = helper.make_tensor_value_info("embs", TensorProto.FLOAT, [1, weights.shape[1]])
    w = helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.flatten().tolist())
    pooled = helper.make_node("ReduceMax", ["feats"], ["pooled"], axes=[1], keepdims=0)
    graph = helper.make_graph([pooled, helper.make_node("MatMul", ["pooled", "w"], ["embs"])], "g", [feats], [out], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
