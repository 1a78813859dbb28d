"""The Serve application: ``import_path: deployments.app:build_app`` in serve_config.yaml."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from .aggregation import Aggregation
from .common import settings_from_args
from .decode import Decode
from .ingress import Ingress
from .tracking import Tracking


def build_app(args: dict[str, Any]) -> Application:
    """The builder ``serve run``/``serve deploy`` call (Serve requires exactly one parameter):
    ``args["settings"]`` is a ``Settings`` mapping; the config's ``deployments`` section is
    applied by Serve itself."""
    return compose(args)


def compose(args: dict[str, Any] | None = None,
            deployment_options: dict[str, dict[str, Any]] | None = None) -> Application:
    """The four deployments bound together. ``deployment_options`` (by deployment name)
    override the defaults in code, as a Serve config's ``deployments`` section does; used by
    ``pose-pipeline serve``, the tests and the benchmarks, which deploy from Python."""
    settings = settings_from_args(args)
    options = deployment_options or {}

    def configured(deployment):
        return deployment.options(**options[deployment.name]) if deployment.name in options else deployment

    return configured(Ingress).bind(settings, configured(Decode).bind(settings),
                                    configured(Tracking).bind(settings), configured(Aggregation).bind(settings))
