"""The official CosyVoice folder layout: tiny checkpoints written with the official parameter names.

The expected names and shapes are listed here from the official modules (MaskedDiffWithXvec with a
wenet ConformerEncoder, InterpolateRegulator, ConditionalCFM + ConditionalDecoder with diffusers
blocks; HiFTGenerator with torch.nn.utils.weight_norm), independently of our module code.
"""

from pathlib import Path

import pytest
import torch

from stepaudio.decoder.official import flow_config, hift_config, load_official, read_hyperpyyaml
from stepaudio.errors import CheckpointError, ModelNotFound

TINY_YAML = """\
# set random seed, so that you may reproduce your result.
__set_seed1: !apply:random.seed [1986]
__set_seed3: !apply:torch.manual_seed [1986]

sample_rate: 22050
spk_embed_dim: 12

flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec
    input_size: 16
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 5120
    input_frame_rate: 41.666666666666664
    only_mask_loss: True
    encoder: !new:cosyvoice.transformer.encoder.ConformerEncoder
        output_size: 16
        attention_heads: 2
        linear_units: 24
        num_blocks: 2
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: 16
        use_cnn_module: False
        macaron_style: False
    length_regulator: !new:cosyvoice.flow.length_regulator.InterpolateRegulator
        channels: 80
        sampling_ratios: [1, 1]
    decoder: !new:cosyvoice.flow.flow_matching.ConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.ConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [16, 16]
            dropout: 0
            attention_head_dim: 8
            n_blocks: 1
            num_mid_blocks: 2
            num_heads: 2
            act_fn: 'gelu'

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: 16
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 8]
    upsample_kernel_sizes: [16, 16]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7]
    resblock_dilation_sizes: [[1, 3], [1, 3]]
    source_resblock_kernel_sizes: [7, 11]
    source_resblock_dilation_sizes: [[1, 3], [1, 3]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: 8

feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1024
    num_mels: 80
    sampling_rate: !ref <sample_rate>
"""


def official_flow_shapes(d=16, heads=2, ffn=24, blocks=2, ratios=2, ch=16, inner=16, n_tf=1, mid=2, spk=12):
    s = {"input_embedding.weight": (5120, d), "spk_embed_affine_layer.weight": (80, spk)}
    s["spk_embed_affine_layer.bias"] = (80,)
    s |= {"encoder.embed.out.0.weight": (d, d), "encoder.embed.out.0.bias": (d,)}
    s |= {"encoder.embed.out.1.weight": (d,), "encoder.embed.out.1.bias": (d,)}
    for i in range(blocks):
        p = f"encoder.encoders.{i}."
        for name in ("linear_q", "linear_k", "linear_v", "linear_out"):
            s |= {p + f"self_attn.{name}.weight": (d, d), p + f"self_attn.{name}.bias": (d,)}
        s[p + "self_attn.linear_pos.weight"] = (d, d)
        s |= {p + "self_attn.pos_bias_u": (heads, d // heads), p + "self_attn.pos_bias_v": (heads, d // heads)}
        s |= {p + "feed_forward.w_1.weight": (ffn, d), p + "feed_forward.w_1.bias": (ffn,)}
        s |= {p + "feed_forward.w_2.weight": (d, ffn), p + "feed_forward.w_2.bias": (d,)}
        for norm in ("norm_ff", "norm_mha"):
            s |= {p + f"{norm}.weight": (d,), p + f"{norm}.bias": (d,)}
    s |= {"encoder.after_norm.weight": (d,), "encoder.after_norm.bias": (d,)}
    s |= {"encoder_proj.weight": (80, d), "encoder_proj.bias": (80,)}
    for i in range(ratios):
        s |= {f"length_regulator.model.{3 * i}.weight": (80, 80, 3), f"length_regulator.model.{3 * i}.bias": (80,)}
        s |= {f"length_regulator.model.{3 * i + 1}.weight": (80,), f"length_regulator.model.{3 * i + 1}.bias": (80,)}
    s |= {
        f"length_regulator.model.{3 * ratios}.weight": (80, 80, 1),
        f"length_regulator.model.{3 * ratios}.bias": (80,),
    }
    e, t = "decoder.estimator.", ch * 4
    s |= {e + "time_mlp.linear_1.weight": (t, 320), e + "time_mlp.linear_1.bias": (t,)}
    s |= {e + "time_mlp.linear_2.weight": (t, t), e + "time_mlp.linear_2.bias": (t,)}

    def resnet(p, cin, cout):
        s.update({p + "mlp.1.weight": (cout, t), p + "mlp.1.bias": (cout,)})
        s.update({p + "block1.block.0.weight": (cout, cin, 3), p + "block1.block.0.bias": (cout,)})
        s.update({p + "block2.block.0.weight": (cout, cout, 3), p + "block2.block.0.bias": (cout,)})
        for b in ("block1", "block2"):
            s.update({p + f"{b}.block.1.weight": (cout,), p + f"{b}.block.1.bias": (cout,)})
        s.update({p + "res_conv.weight": (cout, cin, 1), p + "res_conv.bias": (cout,)})

    def transformers(p):
        for j in range(n_tf):
            q = f"{p}{j}."
            for norm in ("norm1", "norm3"):
                s.update({q + f"{norm}.weight": (ch,), q + f"{norm}.bias": (ch,)})
            for name in ("to_q", "to_k", "to_v"):
                s[q + f"attn1.{name}.weight"] = (inner, ch)
            s.update({q + "attn1.to_out.0.weight": (ch, inner), q + "attn1.to_out.0.bias": (ch,)})
            s.update({q + "ff.net.0.proj.weight": (4 * ch, ch), q + "ff.net.0.proj.bias": (4 * ch,)})
            s.update({q + "ff.net.2.weight": (ch, 4 * ch), q + "ff.net.2.bias": (ch,)})

    resnet(e + "down_blocks.0.0.", 320, ch)
    transformers(e + "down_blocks.0.1.")
    s |= {e + "down_blocks.0.2.conv.weight": (ch, ch, 3), e + "down_blocks.0.2.conv.bias": (ch,)}
    resnet(e + "down_blocks.1.0.", ch, ch)
    transformers(e + "down_blocks.1.1.")
    s |= {e + "down_blocks.1.2.weight": (ch, ch, 3), e + "down_blocks.1.2.bias": (ch,)}
    for i in range(mid):
        resnet(e + f"mid_blocks.{i}.0.", ch, ch)
        transformers(e + f"mid_blocks.{i}.1.")
    resnet(e + "up_blocks.0.0.", 2 * ch, ch)
    transformers(e + "up_blocks.0.1.")
    s |= {e + "up_blocks.0.2.conv.weight": (ch, ch, 4), e + "up_blocks.0.2.conv.bias": (ch,)}
    resnet(e + "up_blocks.1.0.", 2 * ch, ch)
    transformers(e + "up_blocks.1.1.")
    s |= {e + "up_blocks.1.2.weight": (ch, ch, 3), e + "up_blocks.1.2.bias": (ch,)}
    s |= {e + "final_block.block.0.weight": (ch, ch, 3), e + "final_block.block.0.bias": (ch,)}
    s |= {e + "final_block.block.1.weight": (ch,), e + "final_block.block.1.bias": (ch,)}
    s |= {e + "final_proj.weight": (80, ch, 1), e + "final_proj.bias": (80,)}
    return s


def official_hift_shapes(base=16, kernels=(3, 7), dil=2, f0_ch=8):
    s = {"m_source.l_linear.weight": (1, 9), "m_source.l_linear.bias": (1,)}

    def wn(p, shape, bias=True):
        s.update({p + "weight_g": (shape[0], 1, 1), p + "weight_v": shape})
        if bias:
            s[p + "bias"] = (shape[1] if "ups" in p else shape[0],)

    def resblock(p, c, k):
        for j in range(dil):
            wn(p + f"convs1.{j}.", (c, c, k))
            wn(p + f"convs2.{j}.", (c, c, k))
            s[p + f"activations1.{j}.alpha"] = (c,)
            s[p + f"activations2.{j}.alpha"] = (c,)

    wn("conv_pre.", (base, 80, 7))
    wn("ups.0.", (base, base // 2, 16))
    wn("ups.1.", (base // 2, base // 4, 16))
    s |= {"source_downs.0.weight": (base // 2, 18, 16), "source_downs.0.bias": (base // 2,)}
    s |= {"source_downs.1.weight": (base // 4, 18, 1), "source_downs.1.bias": (base // 4,)}
    resblock("source_resblocks.0.", base // 2, 7)
    resblock("source_resblocks.1.", base // 4, 11)
    for i, c in enumerate((base // 2, base // 4)):
        for j, k in enumerate(kernels):
            resblock(f"resblocks.{i * len(kernels) + j}.", c, k)
    wn("conv_post.", (18, base // 4, 7))
    for i in range(5):
        wn(f"f0_predictor.condnet.{2 * i}.", (f0_ch, 80 if i == 0 else f0_ch, 3))
    s |= {"f0_predictor.classifier.weight": (1, f0_ch), "f0_predictor.classifier.bias": (1,)}
    return s


def write_folder(folder: Path, flow_shapes: dict, hift_shapes: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cosyvoice.yaml").write_text(TINY_YAML)
    gen = torch.Generator().manual_seed(0)
    for name, shapes in (("flow.pt", flow_shapes), ("hift.pt", hift_shapes)):
        state = {k: torch.randn(shape, generator=gen) * 0.1 for k, shape in shapes.items()}
        torch.save(state, folder / name)
    (folder / "campplus.onnx").write_bytes(b"not read by these tests")
    return folder


def test_yaml_is_read_without_running_tags(tmp_path):
    path = tmp_path / "cosyvoice.yaml"
    path.write_text(TINY_YAML + "evil: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(CheckpointError):
        read_hyperpyyaml(path)  # python tags are refused, not executed
    path.write_text(TINY_YAML)
    hparams = read_hyperpyyaml(path)
    assert hparams["hift"]["sampling_rate"] == 22050  # !ref resolved
    flow = flow_config(hparams)
    assert flow.spk_embed_dim == 12 and flow.cfm.sigma_min == 1e-6 and flow.cfm.inference_cfg_rate == 0.7
    assert flow.estimator.channels == (16, 16) and flow.sampling_ratios == (1, 1)
    hift = hift_config(hparams)
    assert hift.f0_cond_channels == 8 and hift.resblock_dilation_sizes == ((1, 3), (1, 3))


def test_official_layout_loads_strictly_and_runs(tmp_path):
    folder = write_folder(tmp_path / "CosyVoice-300M-25Hz", official_flow_shapes(), official_hift_shapes())
    flow, hift = load_official(folder)
    assert flow.config.mel_frames(50) == int(50 / 41.666666666666664 * 22050 / 256)
    mel = flow.generate(
        torch.randint(0, 5120, (10,)),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(80, 0),
        torch.zeros(12),
        torch.randn(80, flow.config.mel_frames(10)),
    )
    with torch.inference_mode():
        audio, f0 = hift(mel[None])
    assert audio.shape == (1, mel.shape[1] * 256) and f0.shape == (1, mel.shape[1])


@pytest.mark.parametrize("which", ["flow", "hift"])
def test_mismatched_checkpoints_are_named(tmp_path, which):
    flow_shapes, hift_shapes = official_flow_shapes(), official_hift_shapes()
    shapes = flow_shapes if which == "flow" else hift_shapes
    dropped = next(iter(shapes))
    del shapes[dropped]
    shapes["something.extra"] = (3,)
    folder = write_folder(tmp_path / "f", flow_shapes, hift_shapes)
    with pytest.raises(CheckpointError, match=f"missing: {dropped}.*unexpected: something.extra"):
        load_official(folder)


def test_incomplete_folder_says_what_is_missing(tmp_path):
    (tmp_path / "cosyvoice.yaml").write_text(TINY_YAML)
    with pytest.raises(ModelNotFound, match="flow.pt, hift.pt, campplus.onnx"):
        load_official(tmp_path)
