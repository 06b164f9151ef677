"""The Paraformer front end of the semantic tokenizer: Kaldi fbank -> LFR stacking -> CMVN.

Kaldi fbank: 80 bins, 25 ms Hamming window, 10 ms shift, snip_edges, no dither (computed by
kaldi-native-fbank). LFR ("low frame rate") stacks m=7 consecutive frames every n=6 frames, with
(m-1)//2 copies of the first frame in front and the last frame repeated at the end, giving 560-dim
features at 60 ms. CMVN is Kaldi's AddShift + Rescale from an `am.mvn` file: x = (x + shift) * scale.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np

from stepaudio.errors import CheckpointError, ModelNotFound
from stepaudio.rates import SAMPLE_RATE

FRAME_LENGTH_MS = 25
FRAME_SHIFT_MS = 10
NUM_MEL_BINS = 80
LFR_M = 7
LFR_N = 6
FRAMES_PER_SECOND = 1000 / (FRAME_SHIFT_MS * LFR_N)  # about 16.67 LFR frames per second
INT16_SCALE = 32768.0  # Paraformer was trained on fbank of int16-range samples


def fbank_options(num_bins: int = NUM_MEL_BINS, window: str = "hamming") -> knf.FbankOptions:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.frame_opts.frame_length_ms = FRAME_LENGTH_MS
    opts.frame_opts.frame_shift_ms = FRAME_SHIFT_MS
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.frame_opts.window_type = window
    opts.mel_opts.num_bins = num_bins
    opts.energy_floor = 0.0
    return opts


def _pop_frames(fbank: knf.OnlineFbank, start: int) -> np.ndarray:
    """Frames start..ready-1 of an OnlineFbank as float32 [n, bins], then free them."""
    ready = fbank.num_frames_ready
    if ready == start:
        return np.zeros((0, fbank.dim), dtype=np.float32)
    frames = np.stack([fbank.get_frame(i) for i in range(start, ready)]).astype(np.float32)
    fbank.pop(ready)
    return frames


def kaldi_fbank(samples: np.ndarray, num_bins: int = NUM_MEL_BINS, window: str = "hamming") -> np.ndarray:
    """Log mel filter-bank energies of 16 kHz samples, float32 [frames, num_bins].

    Samples are used as given: the Paraformer front end scales them to int16 range first.
    """
    fbank = knf.OnlineFbank(fbank_options(num_bins, window))
    fbank.accept_waveform(SAMPLE_RATE, np.ascontiguousarray(samples, dtype=np.float32))
    fbank.input_finished()
    return _pop_frames(fbank, 0)


def lfr(feats: np.ndarray, m: int = LFR_M, n: int = LFR_N) -> np.ndarray:
    """Stack m frames every n frames: [T, D] -> [ceil(T/n), m*D]."""
    if len(feats) == 0:
        return np.zeros((0, m * feats.shape[1]), dtype=feats.dtype)
    out_frames = math.ceil(len(feats) / n)
    left = np.repeat(feats[:1], (m - 1) // 2, axis=0)
    right_needed = (out_frames - 1) * n + m - (len(feats) + len(left))
    right = np.repeat(feats[-1:], max(right_needed, 0), axis=0)
    padded = np.concatenate([left, feats, right])
    windows = np.lib.stride_tricks.sliding_window_view(padded, (m, feats.shape[1]))[::n, 0]
    return windows[:out_frames].reshape(out_frames, -1).copy()


@dataclass(frozen=True)
class Cmvn:
    """Global mean/variance normalisation from a Kaldi nnet1 `am.mvn`: x = (x + shift) * scale."""

    shift: np.ndarray  # [D]
    scale: np.ndarray  # [D]

    @classmethod
    def from_kaldi(cls, path: str | Path) -> Cmvn:
        path = Path(path)
        if not path.is_file():
            raise ModelNotFound(f"CMVN file not found: {path} (it ships as am.mvn beside the Paraformer model.pt)")
        text = path.read_text(encoding="utf-8")

        def vector(component: str) -> np.ndarray:
            found = re.search(rf"<{component}>[^\[]*\[([^\]]*)\]", text)
            if found is None:
                raise CheckpointError(f"{path} has no <{component}> vector; is it a Kaldi nnet am.mvn file?")
            return np.array(found.group(1).split(), dtype=np.float32)

        shift, scale = vector("AddShift"), vector("Rescale")
        if shift.shape != scale.shape:
            raise CheckpointError(f"{path}: <AddShift> has {shift.size} values but <Rescale> has {scale.size}")
        return cls(shift, scale)

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        if feats.shape[-1] != self.shift.shape[0]:
            raise ValueError(f"CMVN expects {self.shift.shape[0]}-dim features, got {feats.shape[-1]}")
        return ((feats + self.shift) * self.scale).astype(np.float32)


class ParaformerFrontend:
    """16 kHz samples in [-1, 1] -> [frames, 560] features at 60 ms; offline or streaming."""

    def __init__(self, cmvn: Cmvn | None = None, lfr_m: int = LFR_M, lfr_n: int = LFR_N):
        self.cmvn = cmvn
        self.lfr_m = lfr_m
        self.lfr_n = lfr_n

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        feats = lfr(kaldi_fbank(samples * INT16_SCALE), self.lfr_m, self.lfr_n)
        return feats if self.cmvn is None else self.cmvn(feats)

    def stream(self) -> ParaformerFrontendStream:
        return ParaformerFrontendStream(self)


class ParaformerFrontendStream:
    """Per-session streaming state: `step(samples)` gives every complete frame, `flush()` the rest.

    The frames equal the offline front end's for any chunking: an LFR frame is emitted once its m
    fbank frames exist; the tail frames, which repeat the last fbank frame, only at `flush()`.
    """

    def __init__(self, frontend: ParaformerFrontend):
        self.frontend = frontend
        self._reset()

    def _reset(self) -> None:
        self._fbank = knf.OnlineFbank(fbank_options())
        self._fbank_frames = 0  # fbank frames computed so far
        self._lfr_frames = 0  # LFR frames emitted so far
        self._window = np.zeros((0, NUM_MEL_BINS), dtype=np.float32)  # fbank rows from the next LFR start
        self._last_row = self._window  # the newest fbank frame, which pads the tail

    def step(self, samples: np.ndarray) -> np.ndarray:
        self._fbank.accept_waveform(SAMPLE_RATE, np.ascontiguousarray(samples * INT16_SCALE, dtype=np.float32))
        new = _pop_frames(self._fbank, self._fbank_frames)
        if len(new) and self._fbank_frames == 0:
            new = np.concatenate([np.repeat(new[:1], (self.frontend.lfr_m - 1) // 2, axis=0), new])
        self._fbank_frames = self._fbank.num_frames_ready
        if len(new):
            self._last_row = new[-1:]
        self._window = np.concatenate([self._window, new])
        return self._emit(self._window, final=False)

    def flush(self) -> np.ndarray:
        """Emit the last frames (padded with the final fbank frame) and reset for a new utterance."""
        self._fbank.input_finished()
        out = self._emit(self._window, final=True)
        self._reset()
        return out

    def _emit(self, window: np.ndarray, final: bool) -> np.ndarray:
        m, n = self.frontend.lfr_m, self.frontend.lfr_n
        total = math.ceil(self._fbank_frames / n) if final else None
        rows = []
        while len(window) >= m or (final and self._lfr_frames < total):
            if len(window) < m:
                window = np.concatenate([window, np.repeat(self._last_row, m - len(window), axis=0)])
            rows.append(window[:m].reshape(-1))
            window = window[n:]
            self._lfr_frames += 1
        self._window = window
        feats = np.stack(rows) if rows else np.zeros((0, m * NUM_MEL_BINS), dtype=np.float32)
        return feats if self.frontend.cmvn is None else self.frontend.cmvn(feats)
