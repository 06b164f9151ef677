"""The speaking-rate range every speaker renders, and its check: no model imports, so an option parser
or a wire protocol can check a rate before anything loads."""

from __future__ import annotations

from stepaudio.errors import OptionError

# The speech decoder renders a rate by stretching the tokens over fewer or more mel frames; the flow is
# trained at rate 1 only, so this stays near it. Piper speaks the same range with its own rate control.
MIN_SPEED, MAX_SPEED = 0.5, 2.0


def check_speed(speed: float) -> float:
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise OptionError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed}")
    return float(speed)
