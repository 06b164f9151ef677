"""Tokens -> mel by conditional flow matching: CosyVoice-1's `MaskedDiffWithXvec`.

tokens (41.67 Hz interleaved dual-codebook ids) -> embedding -> Conformer encoder -> linear to 80
-> length regulator (linear interpolation to the mel frame rate, then a conv stack) = mu. (The mini
model's encoder predicts several mel frames per 40 ms token instead, which the regulator places.) A U-Net
estimator predicts the velocity that carries Gaussian noise to the mel, conditioned on mu, the
projected speaker embedding and the prompt mel (`cond`: the prompt frames, zeros after). Sampling
is Euler on a cosine time grid with classifier-free guidance; the prompt frames are cut from the
output. Parameter names follow the official modules, so the official `flow.pt` loads as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.audio.decoder_mel import HOP_LENGTH, N_MELS, SAMPLE_RATE
from stepaudio.decoder.conformer import ConformerEncoder, EncoderConfig
from stepaudio.decoder.estimator import EstimatorConfig, UNetEstimator
from stepaudio.errors import TokenError
from stepaudio.tokenizer.interleave import (
    ACOUSTIC_CODES,
    ACOUSTIC_OFFSET,
    AUDIO_TOKENS_PER_SECOND,
    AUDIO_VOCAB,
    GROUP_SIZE,
    SEMANTIC_PER_GROUP,
)


@dataclass(frozen=True)
class CFMConfig:
    sigma_min: float = 1e-6
    t_scheduler: str = "cosine"  # or "linear"
    training_cfg_rate: float = 0.2  # share of training examples with every condition dropped
    inference_cfg_rate: float = 0.7  # guidance weight
    n_timesteps: int = 10
    # Scale of the starting noise (Matcha-TTS's temperature). Below 1 the solver starts nearer the mean and
    # keeps closer to what mu says: a small flow trained briefly then invents fewer wrong sounds (mini).
    temperature: float = 1.0


@dataclass(frozen=True)
class FlowConfig:
    vocab_size: int = AUDIO_VOCAB
    input_size: int = 512  # token embedding width
    output_size: int = N_MELS
    spk_embed_dim: int = 192
    input_frame_rate: float = AUDIO_TOKENS_PER_SECOND
    sampling_ratios: tuple[int, ...] = (1, 1, 1, 1)  # one conv/GroupNorm/Mish per entry in the regulator
    # "interleaved": the encoder reads the ids as they come, 5 per 120 ms (official). "time_aligned": one
    # step per 40 ms acoustic token, its embedding plus that of the semantic token(s) of the same time,
    # so each code sits where its sound is: a short CPU training cannot learn that reordering (mini).
    token_layout: str = "interleaved"
    # 0: mu is interpolated between encoder steps (official). N > 0 (time-aligned only): the encoder
    # predicts N mel vectors per 40 ms slot and each mel frame takes the one of its place in its slot, so
    # mu can follow sound changes inside a token, as the acoustic codes (4 mel frames each) do (mini).
    slot_frames: int = 0
    # Whether the encoder is told the speaker (its projected embedding added to every input step), so that mu is
    # that voice's rough mel. Official: no (its tokens are the voice-free S3 codes and a large estimator adds the
    # voice). Mini with the learned acoustic codes (`acoustic_fsq`), which leave the voice out: yes.
    encoder_speaker: bool = False
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    cfm: CFMConfig = field(default_factory=CFMConfig)

    def __post_init__(self):
        if self.token_layout not in ("interleaved", "time_aligned"):
            raise ValueError(f"token_layout must be interleaved or time_aligned, not {self.token_layout!r}")
        if self.slot_frames and self.token_layout != "time_aligned":
            raise ValueError("slot_frames needs the time_aligned token layout")

    def mel_frames(self, n_tokens: int, speed: float = 1.0) -> int:
        """Mel frames for n tokens, as the official length regulator counts them; `speed` > 1 gives fewer
        (the regulator stretches the tokens over them: faster speech, as CosyVoice's speed option)."""
        return int(n_tokens / self.input_frame_rate * SAMPLE_RATE / HOP_LENGTH / speed)


# Per 40 ms acoustic slot of a group [s0 s1 a0 a1 a2]: its position, and the positions of the semantic
# (60 ms) tokens it overlaps: slot 0 (0-40 ms) s0, slot 1 (40-80 ms) s0 and s1, slot 2 (80-120 ms) s1.
_SLOTS = torch.tensor([[2, 0, 0], [3, 0, 1], [4, 1, 1]])


def time_aligned(tokens: torch.Tensor) -> torch.Tensor:
    """Interleaved ids [N] -> [M, 3] (acoustic id, semantic id, semantic id) per 40 ms slot; a last,
    partial group keeps the slots whose acoustic token has arrived."""
    groups, rest = divmod(len(tokens), GROUP_SIZE)
    slots = tokens[: groups * GROUP_SIZE].view(groups, GROUP_SIZE)[:, _SLOTS].reshape(-1, 3)
    partial = max(0, rest - SEMANTIC_PER_GROUP)
    return torch.cat([slots, tokens[groups * GROUP_SIZE :][_SLOTS[:partial]]])


def acoustic_codes(slots: torch.Tensor) -> torch.Tensor:
    """[..., 3] time-aligned slots -> [...] the acoustic code (0..4095) of each; a stray semantic id (or
    padding) counts as code 0."""
    return (slots[..., 0] - ACOUSTIC_OFFSET).clamp(min=0)


def slot_places(slots: int, frames: int, per_slot: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(slot, place) of each of `frames` mel frames stretched over `slots` slots of per_slot places:
    frame f lies at slot coordinate f * slots / frames."""
    where = torch.arange(frames, dtype=torch.float64) * slots / frames
    slot = where.floor().long().clamp(max=slots - 1)
    return slot, ((where - slot) * per_slot).floor().long().clamp(0, per_slot - 1)


def place(h: torch.Tensor, frames: int, per_slot: int) -> torch.Tensor:
    """[1, T, per_slot * C] -> [1, C, frames]: each frame takes the vector of its place in its slot."""
    slot, where = slot_places(h.shape[1], frames, per_slot)
    return h.view(1, h.shape[1], per_slot, -1)[:, slot, where].transpose(1, 2)


class LengthRegulator(nn.Module):
    """[B, T_tokens, C] -> [B, C, T_mel]: linear interpolation (or placing, with slot_frames), then
    conv + GroupNorm + Mish per ratio."""

    def __init__(self, channels: int, sampling_ratios: tuple[int, ...], slot_frames: int = 0):
        super().__init__()
        self.slot_frames = slot_frames
        layers: list[nn.Module] = []
        for _ in sampling_ratios:
            layers += [nn.Conv1d(channels, channels, 3, 1, 1), nn.GroupNorm(1, channels), nn.Mish()]
        layers.append(nn.Conv1d(channels, channels, 1, 1))
        self.model = nn.Sequential(*layers)
        if slot_frames and not sampling_ratios:  # a placing regulator starts by passing the encoder's mel on
            nn.init.eye_(layers[-1].weight[:, :, 0])
            nn.init.zeros_(layers[-1].bias)

    def forward(self, parts: list[tuple[torch.Tensor, int]]) -> torch.Tensor:
        """parts: (h [1, T_i, C], frames_i) stretched one by one and joined in time (prompt, then target)."""
        stretched = [
            place(h, frames, self.slot_frames)
            if self.slot_frames
            else F.interpolate(h.transpose(1, 2), size=frames, mode="linear")
            for h, frames in parts
            if h.shape[1] > 0
        ]
        return self.model(torch.cat(stretched, dim=2))


def time_grid(n_steps: int, scheduler: str) -> torch.Tensor:
    t = torch.linspace(0, 1, n_steps + 1)
    return 1 - torch.cos(t * 0.5 * math.pi) if scheduler == "cosine" else t


class FlowMatching(nn.Module):
    """Conditional flow matching around an estimator: the training loss and the Euler sampler."""

    def __init__(self, config: CFMConfig, estimator: UNetEstimator):
        super().__init__()
        self.config = config
        self.estimator = estimator

    @torch.inference_mode()
    def sample(
        self,
        noise: torch.Tensor,  # [1, 80, T]
        mu: torch.Tensor,  # [1, 80, T]
        spks: torch.Tensor,  # [1, 80]
        cond: torch.Tensor,  # [1, 80, T]
        n_steps: int,
        cfg_rate: float,
    ) -> torch.Tensor:
        mask = torch.ones_like(mu[:, :1])
        t_span = time_grid(n_steps, self.config.t_scheduler).to(mu)
        x = noise
        if cfg_rate > 0:  # conditional and unconditional velocity in one batch of two
            mu, spks, cond = (torch.cat([c, torch.zeros_like(c)]) for c in (mu, spks, cond))
            mask = torch.cat([mask, mask])
        for t, t_next in zip(t_span[:-1], t_span[1:], strict=True):
            if cfg_rate > 0:
                v_cond, v_free = self.estimator(torch.cat([x, x]), mask, mu, t.expand(2), spks, cond).chunk(2)
                velocity = (1 + cfg_rate) * v_cond - cfg_rate * v_free
            else:
                velocity = self.estimator(x, mask, mu, t.expand(1), spks, cond)
            x = x + (t_next - t) * velocity
        return x

    def loss(
        self,
        target: torch.Tensor,  # [B, 80, T] mel
        mask: torch.Tensor,  # [B, 1, T]
        mu: torch.Tensor,  # [B, 80, T]
        spks: torch.Tensor,  # [B, 80]
        cond: torch.Tensor,  # [B, 80, T]
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        b = target.shape[0]
        t = torch.rand(b, 1, 1, generator=generator).to(target)
        if self.config.t_scheduler == "cosine":
            t = 1 - torch.cos(t * 0.5 * math.pi)
        z = torch.randn(target.shape, generator=generator).to(target)
        y = (1 - (1 - self.config.sigma_min) * t) * z + t * target
        u = target - (1 - self.config.sigma_min) * z
        keep = (torch.rand(b, generator=generator) > self.config.training_cfg_rate).to(target)
        mu, spks, cond = mu * keep[:, None, None], spks * keep[:, None], cond * keep[:, None, None]
        pred = self.estimator(y, mask, mu, t.view(b), spks, cond)
        return F.mse_loss(pred * mask, u * mask, reduction="sum") / (mask.sum() * u.shape[1])


class FlowModel(nn.Module):
    def __init__(self, config: FlowConfig):
        super().__init__()
        if config.estimator.in_channels != 4 * config.output_size:
            raise ValueError(f"estimator takes {config.estimator.in_channels} channels, not 4 x {config.output_size}")
        self.config = config
        self.input_embedding = nn.Embedding(config.vocab_size, config.input_size)
        self.spk_embed_affine_layer = nn.Linear(config.spk_embed_dim, config.output_size)
        self.encoder = ConformerEncoder(config.encoder)
        if config.encoder_speaker:  # starts at zero: a flow fine-tuned into this option starts as it was
            self.encoder_speaker = nn.Linear(config.spk_embed_dim, config.input_size)
            nn.init.zeros_(self.encoder_speaker.weight)
            nn.init.zeros_(self.encoder_speaker.bias)
        self.encoder_proj = nn.Linear(config.encoder.output_size, config.output_size * max(1, config.slot_frames))
        self.length_regulator = LengthRegulator(config.output_size, config.sampling_ratios, config.slot_frames)
        if config.slot_frames:
            # The mean mel of each acoustic code's slot (the codes are k-means centroids of 40 ms mel slices,
            # so this is the best guess without context; training starts it from the data): mu starts there,
            # as the projection starts at zero, and the encoder learns what context changes.
            self.code_mel = nn.Embedding(ACOUSTIC_CODES, config.slot_frames * config.output_size)
            nn.init.zeros_(self.encoder_proj.weight)
            nn.init.zeros_(self.encoder_proj.bias)
        self.decoder = FlowMatching(config.cfm, UNetEstimator(config.estimator))

    def check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.dtype not in (torch.int32, torch.int64):
            raise TokenError(f"tokens must be integers, got {tokens.dtype}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.config.vocab_size):
            raise TokenError(
                f"token ids must be in 0..{self.config.vocab_size - 1}, got {int(tokens.min())}..{int(tokens.max())}"
            )

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (float32; bfloat16 where the official flow runs as released, on a GPU)."""
        return self.input_embedding.weight.dtype

    def speaker(self, embedding: torch.Tensor) -> torch.Tensor:
        """[B, spk_embed_dim] -> [B, 80]: L2-normalised, then projected (zeros stay a bias only)."""
        return self.spk_embed_affine_layer(F.normalize(embedding, dim=1))

    def encoded_length(self, n_tokens: int) -> int:
        """Encoder steps for n tokens of the layout's input."""
        if not self.aligned:
            return n_tokens
        groups, rest = divmod(n_tokens, GROUP_SIZE)
        return groups * len(_SLOTS) + max(0, rest - SEMANTIC_PER_GROUP)

    @property
    def aligned(self) -> bool:
        return self.config.token_layout == "time_aligned"

    def _embed(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """-> (embeddings [B, M, C], lengths [B], the acoustic code of each slot [B, M] when time-aligned)."""
        if not self.aligned:
            return self.input_embedding(tokens), lengths, None
        rows = [time_aligned(row[:n]) for row, n in zip(tokens, lengths.tolist(), strict=True)]
        lengths = torch.tensor([len(r) for r in rows], device=tokens.device)
        slots = torch.zeros(len(rows), int(lengths.max()), 3, dtype=torch.long, device=tokens.device)
        for i, r in enumerate(rows):
            slots[i, : len(r)] = r
        e = self.input_embedding(slots)  # [B, M, 3, C]
        return e[:, :, 0] + (e[:, :, 1] + e[:, :, 2]) / 2, lengths, acoustic_codes(slots)

    def encode(
        self, tokens: torch.Tensor, embedding: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, N] ids (and speaker embeddings [B, spk_embed_dim], read with `encoder_speaker`) -> [B, M, 80 x
        max(1, slot_frames)] (M = N, or the 40 ms slots when time-aligned); padded steps are zeroed before the
        encoder as in training."""
        given = lengths is not None
        lengths = lengths if given else torch.full((tokens.shape[0],), tokens.shape[1], device=tokens.device)
        h, lengths, acoustic = self._embed(tokens, lengths)
        if self.config.encoder_speaker:
            h = h + self.encoder_speaker(F.normalize(embedding.to(h), dim=1))[:, None]
        h = h * (torch.arange(h.shape[1], device=h.device)[None] < lengths[:, None])[..., None].to(h)
        out = self.encoder_proj(self.encoder(h, lengths if given else None))
        return out + self.code_mel(acoustic) if self.config.slot_frames else out

    def prior(
        self,
        tokens: torch.Tensor,
        prompt_tokens: torch.Tensor,
        prompt_frames: int,
        frames: int,
        embedding: torch.Tensor,  # [spk_embed_dim] speaker embedding (zeros: none)
    ) -> torch.Tensor:
        """mu [1, 80, prompt_frames + frames]: the encoder's rough mel of the prompt's and the target's tokens,
        which the flow refines (the vocoder on it alone tells what the encoder gets from the tokens)."""
        embedding = embedding[None].to(self.dtype)
        h = self.encode(torch.cat([prompt_tokens, tokens]).long()[None], embedding)  # [1, P_tok + N, 80]
        split = self.encoded_length(len(prompt_tokens))
        return self.length_regulator([(h[:, :split], prompt_frames), (h[:, split:], frames)])

    @torch.inference_mode()
    def generate(
        self,
        tokens: torch.Tensor,  # [N] target ids
        prompt_tokens: torch.Tensor,  # [P_tok] ids of the voice prompt (may be empty)
        prompt_mel: torch.Tensor,  # [80, P] mel of the voice prompt (may be empty)
        embedding: torch.Tensor,  # [spk_embed_dim] speaker embedding (zeros: none)
        noise: torch.Tensor,  # [80, P + frames] starting noise
        frames: int | None = None,  # target mel frames; None = the official count for N tokens
        n_steps: int | None = None,
        cfg_rate: float | None = None,
    ) -> torch.Tensor:
        """The target's mel [80, frames] (prompt frames cut)."""
        self.check_tokens(tokens)
        self.check_tokens(prompt_tokens)
        if tokens.numel() == 0:
            raise TokenError("no speech tokens to decode")
        frames = self.config.mel_frames(len(tokens)) if frames is None else frames
        prompt_frames = prompt_mel.shape[1]
        if self.aligned and len(prompt_tokens) % GROUP_SIZE:
            raise TokenError(f"a voice prompt needs whole groups of {GROUP_SIZE} tokens, got {len(prompt_tokens)}")
        if (len(prompt_tokens) == 0) != (prompt_frames == 0):
            raise ValueError("a voice prompt needs both its tokens and its mel (or neither)")
        if noise.shape != (self.config.output_size, prompt_frames + frames):
            raise ValueError(f"noise must be [{self.config.output_size}, {prompt_frames + frames}], got {noise.shape}")
        mu = self.prior(tokens, prompt_tokens, prompt_frames, frames, embedding)
        cond = torch.zeros_like(mu)
        cond[0, :, :prompt_frames] = prompt_mel
        cfm = self.config.cfm
        mel = self.decoder.sample(
            cfm.temperature * noise[None].to(mu),
            mu,
            self.speaker(embedding[None].to(mu.dtype)),
            cond,
            cfm.n_timesteps if n_steps is None else n_steps,
            cfm.inference_cfg_rate if cfg_rate is None else cfg_rate,
        )
        return mel[0, :, prompt_frames:]

    def loss(
        self,
        tokens: torch.Tensor,  # [B, N] padded ids
        token_lengths: torch.Tensor,  # [B]
        mel: torch.Tensor,  # [B, 80, T] padded
        mel_lengths: torch.Tensor,  # [B]
        embedding: torch.Tensor,  # [B, spk_embed_dim]
        generator: torch.Generator | None = None,
        prior_weight: float = 0.0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Flow-matching loss; a random prefix of up to 30% of half the examples serves as prompt.
        prior_weight adds Matcha-TTS's prior loss (mean squared distance of mu to the mel): CosyVoice
        trains without it, but it makes mu a rough mel early on, which a short CPU training needs.
        -> (total loss, its parts)."""
        h = self.encode(tokens, embedding, token_lengths)
        token_lengths = torch.tensor([self.encoded_length(n) for n in token_lengths.tolist()])
        frames = mel.shape[2]
        mu = torch.stack(
            [
                F.pad(self.length_regulator([(h[i : i + 1, :n], int(m))])[0], (0, frames - int(m)))
                for i, (n, m) in enumerate(zip(token_lengths.tolist(), mel_lengths.tolist(), strict=True))
            ]
        )
        mask = (torch.arange(frames, device=mel.device)[None] < mel_lengths[:, None]).to(mel)[:, None]  # [B, 1, T]
        cond = torch.zeros_like(mel)
        for i, m in enumerate(mel_lengths.tolist()):
            if torch.rand(1, generator=generator).item() < 0.5:
                prefix = int(torch.randint(0, int(0.3 * m) + 1, (1,), generator=generator))
                cond[i, :, :prefix] = mel[i, :, :prefix]
        flow = self.decoder.loss(mel, mask, mu * mask, self.speaker(embedding), cond, generator)
        prior = F.mse_loss(mu * mask, mel * mask, reduction="sum") / (mask.sum() * mel.shape[1])
        return flow + prior_weight * prior, {"flow": flow.detach(), "prior": prior.detach()}
