"""3D human pose tracking on video: probing, chunked decoding, engines, results and jobs.

Everything here runs without Ray; ``deployments/`` adapts it to Ray Serve. What users import
is below, loaded on first use, so that ``import pose_pipeline`` (and the client) stay light:

- ``Client``: the HTTP API's Python client;
- ``Settings``, ``JobOptions``: the service's configuration and a job's options;
- ``EngineRegistry``, ``track_file``, ``ResultFiles``, ``read_result``: tracking a file in this
  process (``pose-pipeline track``) and reading a result back;
- ``PipelineError`` and its families (``RequestError``, ``VideoError``, ``ServiceFailure``,
  ``RetryableError``); every concrete error is in ``pose_pipeline.errors``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "Client": "client",
    "Settings": "config",
    "JobOptions": "options",
    "EngineRegistry": "engines.registry",
    "track_file": "pipeline",
    "ResultFiles": "results.writers",
    "read_result": "results.writers",
    "PipelineError": "errors",
    "RequestError": "errors",
    "VideoError": "errors",
    "ServiceFailure": "errors",
    "RetryableError": "errors",
}
__all__ = ["Client", "EngineRegistry", "JobOptions", "PipelineError", "RequestError", "ResultFiles", "RetryableError",
           "ServiceFailure", "Settings", "VideoError", "read_result", "track_file"]

if TYPE_CHECKING:
    from .client import Client
    from .config import Settings
    from .engines.registry import EngineRegistry
    from .errors import PipelineError, RequestError, RetryableError, ServiceFailure, VideoError
    from .options import JobOptions
    from .pipeline import track_file
    from .results.writers import ResultFiles, read_result


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pose_pipeline' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
