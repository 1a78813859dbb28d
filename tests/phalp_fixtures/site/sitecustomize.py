"""Put on PYTHONPATH by the phalp tests for the processes they start (CLI, Ray workers, the
upstream harness): registers the CPU stand-in of neural_renderer's compiled rasterizer where
that is not compiled (a CUDA build keeps its own)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from phalp_fixtures.rasterizer import install_unless_compiled  # noqa: E402

install_unless_compiled()
sys.path.pop(0)
