"""Choose the engine an operator asked for: ``LIPSYNC_ENGINE=builtin|torchscript``."""

from __future__ import annotations

import os
from pathlib import Path

from inference_service.engine.engine import LipsyncEngine

ENGINES = ("builtin", "torchscript")


class EngineConfigError(ValueError):
    """The engine settings are unusable: an operator problem, reported at start-up."""


def build_engine(
    name: str, model_path: str | Path | None = None, batch_size: int = 32
) -> LipsyncEngine:
    if name == "builtin":
        return LipsyncEngine()
    if name == "torchscript":
        if not model_path or not Path(model_path).is_file():
            raise EngineConfigError(
                "LIPSYNC_ENGINE=torchscript needs LIPSYNC_TORCHSCRIPT_MODEL, the path of a"
                f" TorchScript file (got {str(model_path or '') or 'nothing'!r})"
            )
        # torch is imported only for this engine: the built-in one starts without it.
        from inference_service.engine.torchscript import TorchScriptAnimator

        return LipsyncEngine(animator=TorchScriptAnimator(model_path, batch_size=batch_size))
    raise EngineConfigError(
        f"LIPSYNC_ENGINE={name!r} is not known; use one of {', '.join(ENGINES)}"
    )


def engine_from_env() -> LipsyncEngine:
    return build_engine(
        os.environ.get("LIPSYNC_ENGINE", "builtin"),
        os.environ.get("LIPSYNC_TORCHSCRIPT_MODEL"),
        int(os.environ.get("LIPSYNC_TORCH_BATCH", "32")),
    )
