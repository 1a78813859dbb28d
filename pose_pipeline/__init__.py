"""3D human pose tracking on video: probing, chunked decoding, engines, results and jobs.

Everything here runs without Ray; ``deployments/`` adapts it to Ray Serve."""

__version__ = "0.1.0"
