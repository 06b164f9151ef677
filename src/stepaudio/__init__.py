"""stepaudio: an open implementation of the Step-Audio voice system."""

from importlib.metadata import PackageNotFoundError, version

from stepaudio.errors import AudioError, CheckpointError, ModelNotFound, StepAudioError

try:
    __version__ = version("stepaudio")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["AudioError", "CheckpointError", "ModelNotFound", "StepAudioError", "__version__"]
