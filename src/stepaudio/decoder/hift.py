"""The vocoder: HiFT (HiFi-GAN + neural source filter + iSTFT), 80-bin 22.05 kHz mel -> PCM.

A ConvRNN-style F0 predictor reads the mel; a harmonic source (sines at F0 and its overtones, noise
where unvoiced) is built at the audio rate; HiFi-GAN upsampling (transposed convs, Snake ResBlocks)
turns the mel into a short-time spectrum at a quarter of the audio rate, fused at every level with
the STFT of the source; an inverse STFT (n_fft 16, hop 4) gives the waveform, clipped to +-0.99.
Convolutions keep the official weight-norm pair (`weight_g`, `weight_v`), so `hift.pt` loads as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.audio.decoder_mel import HOP_LENGTH, N_MELS, SAMPLE_RATE


@dataclass(frozen=True)
class HiFTConfig:
    in_channels: int = N_MELS
    base_channels: int = 512
    nb_harmonics: int = 8
    sampling_rate: int = SAMPLE_RATE
    nsf_alpha: float = 0.1  # sine amplitude
    nsf_sigma: float = 0.003  # noise std in voiced parts
    nsf_voiced_threshold: float = 10.0  # Hz
    upsample_rates: tuple[int, ...] = (8, 8)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16)
    istft_n_fft: int = 16
    istft_hop: int = 4
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    source_resblock_kernel_sizes: tuple[int, ...] = (7, 11)
    source_resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5))
    lrelu_slope: float = 0.1
    phase_range: float = 1.0  # radians either side of 0: the official head's 1 suits a hop of 4 samples
    audio_limit: float = 0.99
    f0_cond_channels: int = 512

    def __post_init__(self):
        for name in (
            "upsample_rates",
            "upsample_kernel_sizes",
            "resblock_kernel_sizes",
            "source_resblock_kernel_sizes",
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("resblock_dilation_sizes", "source_resblock_dilation_sizes"):
            object.__setattr__(self, name, tuple(tuple(d) for d in getattr(self, name)))
        if self.samples_per_frame != HOP_LENGTH:
            raise ValueError(f"upsampling x iSTFT hop = {self.samples_per_frame}, the mel hop is {HOP_LENGTH}")

    @property
    def samples_per_frame(self) -> int:
        return math.prod(self.upsample_rates) * self.istft_hop


def _split_weight_norm(conv: nn.Module, init_std: float | None) -> None:
    """Replace `weight` (first drawn from N(0, init_std) if given) by magnitude `weight_g` (norm over
    all but dim 0) and direction `weight_v`."""
    if init_std is not None:
        nn.init.normal_(conv.weight, 0.0, init_std)
    weight = conv.weight.detach().clone()
    del conv.weight
    conv.weight_g = nn.Parameter(weight.norm(dim=tuple(range(1, weight.ndim)), keepdim=True))
    conv.weight_v = nn.Parameter(weight)


def _joined_weight(conv: nn.Module) -> torch.Tensor:
    v = conv.weight_v
    return conv.weight_g * v / v.norm(dim=tuple(range(1, v.ndim)), keepdim=True)


class WNConv1d(nn.Conv1d):
    """Conv1d under weight normalisation, stored as the official (old-style) `weight_g`/`weight_v`."""

    def __init__(self, *args, init_std: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        _split_weight_norm(self, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _joined_weight(self), self.bias)


class WNConvTranspose1d(nn.ConvTranspose1d):
    def __init__(self, *args, init_std: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        _split_weight_norm(self, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(
            x,
            _joined_weight(self),
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )


class Snake(nn.Module):
    """x + sin^2(alpha x) / alpha, one alpha per channel: a periodic bias that suits waveforms."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha[None, :, None]
        return x + torch.sin(x * alpha).pow(2) / (alpha + 1e-9)


class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()

        def conv(dilation: int) -> WNConv1d:
            padding = (kernel_size * dilation - dilation) // 2
            return WNConv1d(channels, channels, kernel_size, 1, dilation=dilation, padding=padding, init_std=0.01)

        self.convs1 = nn.ModuleList(conv(d) for d in dilations)
        self.convs2 = nn.ModuleList(conv(1) for _ in dilations)
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2, act1, act2 in zip(
            self.convs1, self.convs2, self.activations1, self.activations2, strict=True
        ):
            x = x + conv2(act2(conv1(act1(x))))
        return x


class F0Predictor(nn.Module):
    """mel [B, 80, T] -> F0 in Hz [B, T]: five 3-wide convs with ELU, then a linear read-out."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(5):
            layers += [WNConv1d(in_channels if i == 0 else channels, channels, 3, padding=1), nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.condnet(mel).transpose(1, 2)).squeeze(-1).abs()


class HarmonicSource(nn.Module):
    """F0 per frame -> excitation at the audio rate: sines at F0 x 1..H+1 (noise if unvoiced), mixed."""

    def __init__(self, config: HiFTConfig):
        super().__init__()
        self.config = config
        self.l_linear = nn.Linear(config.nb_harmonics + 1, 1)

    def forward(
        self,
        f0: torch.Tensor,  # [B, T] Hz per mel frame
        noise: torch.Tensor,  # [B, H+1, T * 256] standard normal
        phases: torch.Tensor,  # [B, H+1] start phase of each harmonic, radians
        start_cycles: torch.Tensor | None = None,  # [B, H+1] cycles already run (for streaming)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> excitation [B, 1, N] and the cycles run by every harmonic at every sample [B, H+1, N]."""
        c = self.config
        f0_samples = f0.repeat_interleave(c.samples_per_frame, dim=1)[:, None]  # [B, 1, N]
        harmonics = torch.arange(1, c.nb_harmonics + 2, device=f0.device, dtype=torch.float64)[None, :, None]
        # float64: after minutes of audio the running count of cycles must still resolve a sample's phase
        cycles = torch.cumsum(f0_samples.double() * harmonics / c.sampling_rate, dim=-1)
        if start_cycles is not None:
            cycles = cycles + start_cycles.double()[:, :, None]
        theta = 2 * math.pi * torch.remainder(cycles, 1.0).float()
        voiced = (f0_samples > c.nsf_voiced_threshold).float()
        sines = c.nsf_alpha * torch.sin(theta + phases[:, :, None])
        noise_amp = voiced * c.nsf_sigma + (1 - voiced) * c.nsf_alpha / 3
        sines = sines * voiced + noise_amp * noise
        return torch.tanh(self.l_linear(sines.transpose(1, 2))).transpose(1, 2), cycles


class HiFT(nn.Module):
    def __init__(self, config: HiFTConfig):
        super().__init__()
        self.config = config
        c = config
        self.m_source = HarmonicSource(config)
        self.conv_pre = WNConv1d(c.in_channels, c.base_channels, 7, 1, padding=3)
        self.ups = nn.ModuleList(
            WNConvTranspose1d(
                c.base_channels // 2**i, c.base_channels // 2 ** (i + 1), k, u, padding=(k - u) // 2, init_std=0.01
            )
            for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes, strict=True))
        )
        # The source's STFT enters every level, downsampled to that level's rate.
        stft_channels = c.istft_n_fft + 2
        rates = [1, *c.upsample_rates[::-1][:-1]]
        self.source_downs = nn.ModuleList()
        self.source_resblocks = nn.ModuleList()
        for i, (u, k, d) in enumerate(
            zip(
                [math.prod(rates[: j + 1]) for j in range(len(rates))][::-1],
                c.source_resblock_kernel_sizes,
                c.source_resblock_dilation_sizes,
                strict=True,
            )
        ):
            width = c.base_channels // 2 ** (i + 1)
            down = nn.Conv1d(stft_channels, width, 1) if u == 1 else nn.Conv1d(stft_channels, width, u * 2, u, u // 2)
            self.source_downs.append(down)
            self.source_resblocks.append(ResBlock(width, k, d))
        self.resblocks = nn.ModuleList(
            ResBlock(c.base_channels // 2 ** (i + 1), k, d)
            for i in range(len(self.ups))
            for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True)
        )
        self.conv_post = WNConv1d(c.base_channels // 2 ** len(self.ups), stft_channels, 7, 1, padding=3, init_std=0.01)
        self.f0_predictor = F0Predictor(c.in_channels, c.f0_cond_channels)
        self.register_buffer("window", torch.hann_window(c.istft_n_fft), persistent=False)

    def random_source_inputs(self, batch: int, frames: int, generator: torch.Generator | None = None):
        """Noise [B, H+1, N] and start phases [B, H+1] (fundamental at 0), as the official source draws."""
        h = self.config.nb_harmonics + 1
        noise = torch.randn(batch, h, frames * self.config.samples_per_frame, generator=generator)
        phases = (torch.rand(batch, h, generator=generator) * 2 - 1) * math.pi
        phases[:, 0] = 0
        return noise, phases

    def decode(self, mel: torch.Tensor, excitation: torch.Tensor) -> torch.Tensor:
        """mel [B, 80, T] + excitation [B, 1, T*256] -> waveform [B, T*256] in +-audio_limit."""
        c = self.config
        spec = torch.stft(excitation[:, 0], c.istft_n_fft, c.istft_hop, window=self.window, return_complex=True)
        source = torch.cat([spec.real, spec.imag], dim=1)  # [B, n_fft + 2, N / hop + 1]
        x = self.conv_pre(mel)
        n_kernels = len(c.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, c.lrelu_slope))
            if i == len(self.ups) - 1:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + self.source_resblocks[i](self.source_downs[i](source))
            x = sum(block(x) for block in self.resblocks[i * n_kernels : (i + 1) * n_kernels]) / n_kernels
        x = self.conv_post(F.leaky_relu(x))
        half = c.istft_n_fft // 2 + 1
        magnitude = torch.exp(x[:, :half]).clamp(max=1e2)
        # The official head gives a phase in -1..1 rad, enough when the iSTFT hop is 4 samples; a longer
        # hop (cheaper: the network runs at a lower rate) needs the whole circle, phase_range = pi.
        phase = self.config.phase_range * torch.sin(x[:, half:])
        spectrum = torch.polar(magnitude.float(), phase.float())  # under autocast exp and sin differ in dtype
        audio = torch.istft(spectrum, c.istft_n_fft, c.istft_hop, window=self.window)
        return audio.clamp(-c.audio_limit, c.audio_limit)

    def forward(
        self, mel: torch.Tensor, f0: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """mel [B, 80, T] -> (waveform [B, T*256], predicted F0 [B, T]); a given F0 drives the source."""
        predicted = self.f0_predictor(mel)
        noise, phases = self.random_source_inputs(mel.shape[0], mel.shape[2], generator)
        excitation, _ = self.m_source(predicted if f0 is None else f0, noise.to(mel), phases.to(mel))
        return self.decode(mel, excitation), predicted
