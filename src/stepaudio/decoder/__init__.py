"""Speech decoder: dual-codebook tokens -> mel (flow matching) -> waveform (HiFT), with voice prompts."""
