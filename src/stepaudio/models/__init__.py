"""Model store and loaders: where weights are, and turning them into modules."""

from stepaudio.models.store import (
    MINI_ASSETS,
    OFFICIAL_MODELS,
    ResolvedModel,
    resolve_model,
)

__all__ = ["MINI_ASSETS", "OFFICIAL_MODELS", "ResolvedModel", "resolve_model"]
