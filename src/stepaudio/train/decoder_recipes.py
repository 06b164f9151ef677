"""Recipes that train the speech decoder: `stepaudio train flow` and `stepaudio train vocoder`.

The flow learns tokens -> mel with the flow-matching loss (random prompt prefixes, condition drop for
guidance) plus Matcha-TTS's prior loss, which a short CPU training needs to get a usable mel early.
The vocoder learns mel -> waveform with spectral losses only: a multi-resolution STFT loss plus a mel
L1, which is how neural source-filter vocoders were first trained and converges on a CPU in an hour,
where a GAN would not; its source is driven by the F0 of the real audio (teacher forcing) while the F0
predictor learns that F0 with an L1 loss. The `mini` sizes are below.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from stepaudio.audio import mel_spectrogram
from stepaudio.audio.decoder_mel import N_MELS
from stepaudio.decoder.checkpoint import save_model
from stepaudio.decoder.conformer import EncoderConfig
from stepaudio.decoder.estimator import EstimatorConfig
from stepaudio.decoder.flow import CFMConfig, FlowConfig, FlowModel, acoustic_codes, slot_places, time_aligned
from stepaudio.decoder.hift import HiFT, HiFTConfig
from stepaudio.errors import CheckpointError
from stepaudio.models.checkpoint import load_exact
from stepaudio.tokenizer.interleave import ACOUSTIC_CODES, ACOUSTIC_OFFSET, AUDIO_VOCAB, SEMANTIC_CODES
from stepaudio.train.decoder_data import (
    DecoderDataset,
    Embed,
    Tokenize,
    collate_flow,
    crop_flow_example,
    vocoder_segment,
)
from stepaudio.train.loop import TrainOptions, train
from stepaudio.train.token_noise import replace_at_random

# Sized for RTF < 0.5 on 2 cores with 10 flow steps and 90 minutes of CPU training (see the bench).
# Its encoder predicts 4 mel frames per 40 ms token (a linear regulator places them): mu is then a usable
# mel after minutes of training, where interpolating one vector per token never got there.
MINI_FLOW = FlowConfig(
    token_layout="time_aligned",
    slot_frames=4,
    sampling_ratios=(),
    input_size=256,
    spk_embed_dim=256,  # GE2E
    encoder=EncoderConfig(input_size=256, output_size=256, attention_heads=4, linear_units=1024, num_blocks=6),
    estimator=EstimatorConfig(channels=(128,), attention_head_dim=32, n_blocks=1, num_mid_blocks=2, num_heads=4),
    cfm=CFMConfig(temperature=0.2),  # picked by resynth WER (docs/experiments.md, the flow's sampling temperature)
)
# The mini vocoder runs its network at 4x the mel rate and leaves the rest to a 256-point iSTFT (hop 64,
# full-circle phases): a twelfth of the official 5.5 kHz network's work, so it trains on a CPU.
MINI_HIFT = HiFTConfig(
    base_channels=256,
    upsample_rates=(4,),
    upsample_kernel_sizes=(8,),
    istft_n_fft=256,
    istft_hop=64,
    source_resblock_kernel_sizes=(7,),
    source_resblock_dilation_sizes=((1, 3, 5),),
    f0_cond_channels=128,
    phase_range=math.pi,
)
PACKAGED_DTYPE = torch.float16  # exported weights: half the size on disk; the decoder runs in float32
STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))


class _Mapped(torch.utils.data.Dataset):
    def __init__(self, dataset, fn):
        self.dataset, self.fn = dataset, fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.fn(self.dataset[index])


def corrupt_acoustic(tokens: torch.Tensor, max_rate: float) -> torch.Tensor:
    """Each row's acoustic tokens replaced by random acoustic codes at a rate drawn from [0, max_rate].

    A flow trained on clean tokens reads the words from the acoustic stream (quantised mel slices) and
    hardly from the semantic one (bench/decoder.py shuffles each stream to show it). A TTS LM gets the
    acoustic tokens wrong most often, so a flow that also reads the semantic tokens can say more of what it means."""
    return replace_at_random(tokens, ACOUSTIC_OFFSET, AUDIO_VOCAB, max_rate)


class FlowObjective(nn.Module):
    def __init__(self, flow: FlowModel, prior_weight: float, acoustic_corruption: float = 0.0):
        super().__init__()
        self.flow, self.prior_weight, self.acoustic_corruption = flow, prior_weight, acoustic_corruption

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        tokens = batch["tokens"]
        if self.acoustic_corruption:
            tokens = corrupt_acoustic(tokens, self.acoustic_corruption)
        return self.flow.loss(
            tokens,
            batch["token_lengths"],
            batch["mel"],
            batch["mel_lengths"],
            batch["embedding"],
            prior_weight=self.prior_weight,
        )


def stft_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + L1 of log magnitudes, averaged."""
    total = predicted.new_zeros(())
    for n_fft, hop in STFT_RESOLUTIONS:
        window = torch.hann_window(n_fft, device=predicted.device)
        p, t = (torch.stft(x, n_fft, hop, window=window, return_complex=True).abs() for x in (predicted, target))
        total = total + torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp(min=1e-7)
        total = total + F.l1_loss(torch.log(p.clamp(min=1e-5)), torch.log(t.clamp(min=1e-5)))
    return total / len(STFT_RESOLUTIONS)


class VocoderObjective(nn.Module):
    def __init__(self, hift: HiFT):
        super().__init__()
        self.hift = hift

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        audio, f0 = self.hift(batch["mel"], f0=batch["f0"])
        spectral = stft_loss(audio, batch["audio"])
        mel = F.l1_loss(mel_spectrogram(audio), batch["mel"])
        pitch = F.l1_loss(f0, batch["f0"]) / 100  # Hz / 100
        return spectral + mel + pitch, {"stft": spectral.detach(), "mel": mel.detach(), "f0": pitch.detach()}


def _collate_segments(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([e[key] for e in examples]) for key in examples[0]}


def mean_code_mel(dataset: DecoderDataset, per_slot: int) -> torch.Tensor:
    """[ACOUSTIC_CODES, per_slot * 80]: the mean mel at each place of each acoustic code's slots in the
    data (codes never seen: the mean of all frames), placed as the flow's regulator places them."""
    sums, counts = torch.zeros(ACOUSTIC_CODES * per_slot, N_MELS), torch.zeros(ACOUSTIC_CODES * per_slot)
    for index in tqdm(range(len(dataset)), desc="mean mel per acoustic code", unit="utt"):
        example = crop_flow_example(dataset[index], None, None)
        slots, mel = time_aligned(example["tokens"]), example["mel"]
        slot, where = slot_places(len(slots), mel.shape[1], per_slot)
        rows = acoustic_codes(slots)[slot] * per_slot + where
        sums.index_add_(0, rows, mel.T)
        counts.index_add_(0, rows, torch.ones(len(rows)))
    means = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], sums.sum(0) / counts.sum())
    return means.view(ACOUSTIC_CODES, per_slot * N_MELS)


def codebook_embedding(centroids: torch.Tensor, dim: int) -> torch.Tensor:
    """[K, D] k-means centroids -> [K, dim] token embeddings: the centroids' top principal components,
    scaled to the row norm of a default (standard normal) embedding. Codes whose features are near
    start near, so what the encoder learns about one code carries over to its neighbours; from random
    rows it must learn every code on its own, which a short CPU training does not (its embeddings stay
    where they started)."""
    centred = centroids.float() - centroids.float().mean(dim=0)
    components = torch.linalg.svd(centred, full_matrices=False).Vh[:dim]
    projected = F.pad(centred @ components.T, (0, max(0, dim - len(components))))
    return projected * (math.sqrt(dim) / projected.norm(dim=1).mean())


def with_encoder_dropout(config: FlowConfig, rate: float) -> FlowConfig:
    """The config with every dropout of the Conformer encoder at `rate`. The mini flow underfits its corpus
    (resynth of training utterances is no more intelligible than of held-out ones), so a fine-tune may drop it."""
    encoder = dataclasses.replace(
        config.encoder, dropout_rate=rate, positional_dropout_rate=rate, attention_dropout_rate=rate
    )
    return dataclasses.replace(config, encoder=encoder)


def train_flow(
    manifest: Path,
    options: TrainOptions,
    config: FlowConfig = MINI_FLOW,
    embed: Embed | None = None,
    tokenize: Tokenize | None = None,
    export_dir: Path | None = None,
    max_tokens: int = 250,
    prior_weight: float = 1.0,
    codebooks: tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    initial: FlowModel | None = None,
    acoustic_corruption: float = 0.0,
) -> int:
    """codebooks: the (semantic, acoustic) centroids of the tokenizer that made the tokens; a fresh run
    starts those streams' token embeddings from them (`codebook_embedding`; None: a stream keeps its rows);
    new acoustic centroids also remake the mean mel per acoustic code (`mean_code_mel`).
    initial: a trained flow to start from (fine-tuning, e.g. after one stream's codebook changed); its weights go
    into a flow of `config`, which may differ from its own where no weight's shape does (e.g. the dropout).
    acoustic_corruption: the highest rate of random acoustic tokens in training (`corrupt_acoustic`)."""
    dataset = DecoderDataset(manifest, "train", Path(options.out) / "features", tokenize, embed, config.spk_embed_dim)
    flow = FlowModel(config)
    if initial is not None:
        state = initial.state_dict()
        if config.encoder_speaker and not initial.config.encoder_speaker:  # its new projection starts at zero
            state |= {k: v for k, v in flow.state_dict().items() if k.startswith("encoder_speaker.")}
        load_exact(flow, state, "the initial flow")
    if codebooks and not options.resume:
        sizes = [None if c is None else len(c) for c in codebooks]
        allowed = ((None, SEMANTIC_CODES), (None, ACOUSTIC_CODES))
        if config.vocab_size != AUDIO_VOCAB or any(n not in ok for n, ok in zip(sizes, allowed, strict=True)):
            raise CheckpointError(
                f"codebooks of {sizes} codes for {config.vocab_size} token ids; "
                f"the audio ids are {SEMANTIC_CODES} semantic + {ACOUSTIC_CODES} acoustic codes"
            )
        rows = flow.input_embedding.weight.data
        for centroids, start in zip(codebooks, (0, SEMANTIC_CODES), strict=True):
            if centroids is not None:
                rows[start : start + len(centroids)] = codebook_embedding(centroids, config.input_size)
    new_acoustic_codes = initial is None or (codebooks is not None and codebooks[1] is not None)
    if config.slot_frames and not options.resume and new_acoustic_codes:
        flow.code_mel.weight.data = mean_code_mel(dataset, config.slot_frames)
    objective = FlowObjective(flow, prior_weight, acoustic_corruption)
    data = _Mapped(dataset, lambda example: crop_flow_example(example, max_tokens, None))
    export = export_dir or options.out
    return train(
        objective, data, collate_flow, options, lambda: save_model(flow, config, export, "flow", PACKAGED_DTYPE)
    )


def train_vocoder(
    manifest: Path,
    options: TrainOptions,
    config: HiFTConfig = MINI_HIFT,
    export_dir: Path | None = None,
    segment_frames: int = 32,
) -> int:
    dataset = DecoderDataset(manifest, "train", Path(options.out) / "features", kind="vocoder")
    hift = HiFT(config)
    objective = VocoderObjective(hift)
    data = _Mapped(dataset, lambda example: vocoder_segment(example, segment_frames, None))
    export = export_dir or options.out
    return train(
        objective, data, _collate_segments, options, lambda: save_model(hift, config, export, "hift", PACKAGED_DTYPE)
    )
