"""`stepaudio train acoustic`: the learned mini acoustic tokenizer (`tokenizer.acoustic_fsq`).

Its encoder is trained as the front half of an autoencoder: 40 ms log-mel slices -> encoder -> FSQ codes ->
a decoder that is also given the speaker's embedding -> the decoder mel of those 40 ms (4 frames per slot,
placed on the mel frames as the flow's regulator places them), under an L1 + L2 loss. The decoder knows the
voice, so the codes are free to keep what the voice does not tell: the sounds, their pitch and loudness. Only
the encoder is exported; the flow learns its own way back (`stepaudio train flow --encoder-speaker`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from stepaudio.audio.decoder_mel import HOP_LENGTH, N_MELS, SAMPLE_RATE
from stepaudio.decoder.flow import slot_places
from stepaudio.tokenizer.acoustic_fsq import AcousticFSQConfig, AcousticFSQTokenizer, ConvBlock, FSQEncoder
from stepaudio.tokenizer.acoustic_mini import stack_frames
from stepaudio.train.decoder_data import DecoderDataset, Embed
from stepaudio.train.loop import TrainOptions, train

SLOT_SECONDS = 0.04
STATISTICS_UTTERANCES = 500  # enough for the mean and spread of each slice dimension
MINI_ACOUSTIC = AcousticFSQConfig()  # 256 channels, 4 blocks of kernel 3 (160 ms either side), 8^4 codes


def slot_frames(slots: int) -> int:
    """Decoder mel frames spanned by `slots` 40 ms slots."""
    return int(slots * SLOT_SECONDS * SAMPLE_RATE / HOP_LENGTH)


class SpeakerMelDecoder(nn.Module):
    """FSQ values [B, N, levels] + speaker embeddings [B, D] -> 4 mel frames per slot [B, N, 4 x 80]."""

    def __init__(self, config: AcousticFSQConfig, embedding_dim: int, channels: int = 256, blocks: int = 6):
        super().__init__()
        self.codes = nn.Linear(len(config.levels), channels)
        self.speaker = nn.Linear(embedding_dim, channels)
        self.blocks = nn.Sequential(*[ConvBlock(channels, 5) for _ in range(blocks)])
        self.output = nn.Linear(channels, config.frames_per_token * N_MELS)

    def forward(self, values: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.output(self.blocks(self.codes(values) + self.speaker(F.normalize(embedding, dim=1))[:, None]))


class AcousticObjective(nn.Module):
    def __init__(self, encoder: FSQEncoder, decoder: SpeakerMelDecoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        values, _ = self.encoder(batch["slices"])
        slots = self.decoder(values, batch["embedding"])  # [B, N, 4 x 80]
        per_slot = slots.shape[2] // N_MELS
        l1 = l2 = slots.new_zeros(())
        for row, n, frames, mel in zip(slots, batch["lengths"], batch["mel_lengths"], batch["mel"], strict=True):
            slot, place = slot_places(int(n), int(frames), per_slot)
            predicted = row[slot].view(int(frames), per_slot, N_MELS)[torch.arange(int(frames)), place].T
            l1 = l1 + F.l1_loss(predicted, mel[:, :frames], reduction="sum")
            l2 = l2 + F.mse_loss(predicted, mel[:, :frames], reduction="sum")
        count = batch["mel_lengths"].sum() * N_MELS
        l1, l2 = l1 / count, l2 / count
        return l1 + l2, {"l1": l1.detach(), "l2": l2.detach()}


class SliceExamples(torch.utils.data.Dataset):
    """Random runs of at most `max_slots` slices (standardised) with the decoder mel they span."""

    def __init__(self, dataset: DecoderDataset, config: AcousticFSQConfig, mean, std, max_slots: int):
        self.dataset, self.config, self.mean, self.std, self.max_slots = dataset, config, mean, std, max_slots

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        example = self.dataset[index]
        slices = stack_frames(example["logmel"], self.config.frames_per_token)
        mel = example["mel"]
        count = min(len(slices), int(mel.shape[1] * HOP_LENGTH / SAMPLE_RATE / SLOT_SECONDS))
        start = int(torch.randint(0, max(1, count - self.max_slots + 1), (1,)))
        stop = min(count, start + self.max_slots)
        frames = mel[:, slot_frames(start) : slot_frames(start) + slot_frames(stop - start)]
        return {"slices": (slices[start:stop] - self.mean) / self.std, "mel": frames, "embedding": example["embedding"]}


def collate_slices(examples: list[dict]) -> dict[str, torch.Tensor]:
    lengths = torch.tensor([len(e["slices"]) for e in examples])
    mel_lengths = torch.tensor([e["mel"].shape[1] for e in examples])
    slices = torch.zeros(len(examples), int(lengths.max()), examples[0]["slices"].shape[1])
    mel = torch.zeros(len(examples), N_MELS, int(mel_lengths.max()))
    for i, e in enumerate(examples):
        slices[i, : len(e["slices"])] = e["slices"]
        mel[i, :, : e["mel"].shape[1]] = e["mel"]
    embedding = torch.stack([e["embedding"] for e in examples])
    return {"slices": slices, "lengths": lengths, "mel": mel, "mel_lengths": mel_lengths, "embedding": embedding}


def slice_statistics(dataset: DecoderDataset, config: AcousticFSQConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of each slice dimension over the first utterances of the corpus."""
    count = min(len(dataset), STATISTICS_UTTERANCES)
    slices = torch.cat(
        [
            stack_frames(dataset[i]["logmel"], config.frames_per_token)
            for i in tqdm(range(count), desc="slice statistics", unit="utt")
        ]
    )
    return slices.mean(dim=0), slices.std(dim=0).clamp(min=1e-3)


def train_acoustic(
    manifest: Path,
    options: TrainOptions,
    embed: Embed,
    export: Path,
    config: AcousticFSQConfig = MINI_ACOUSTIC,
    embedding_dim: int = 256,
    max_slots: int = 100,
) -> int:
    """Train the encoder (and its speaker-aware decoder); export the tokenizer to `export` (+ .json)."""
    dataset = DecoderDataset(manifest, "train", Path(options.out) / "features", None, embed, embedding_dim, "acoustic")
    mean, std = slice_statistics(dataset, config)
    encoder = FSQEncoder(config)
    objective = AcousticObjective(encoder, SpeakerMelDecoder(config, embedding_dim))
    data = SliceExamples(dataset, config, mean, std, max_slots)
    tokenizer = AcousticFSQTokenizer(config, encoder, mean, std)  # shares the encoder being trained
    return train(objective, data, collate_slices, options, lambda: tokenizer.save(export))
