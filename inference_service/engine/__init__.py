"""The lip-sync engine (no RPC, no messaging): ``LipsyncEngine().setup()``, then render."""

from inference_service.engine.engine import (
    LipsyncEngine,
    RenderResult,
    resolve_seed,
    scale_to_height,
)

__all__ = ["LipsyncEngine", "RenderResult", "resolve_seed", "scale_to_height"]
