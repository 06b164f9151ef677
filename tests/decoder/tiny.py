"""Tiny random decoders for the tests: the real code paths at a size that runs in a blink."""

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
