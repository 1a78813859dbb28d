"""``support.serve`` under its old name, for tests/engines/test_phalp_real.py (which imports it by
name; the other tests reach it through the ``serve_tools`` fixture)."""

from support.serve import *  # noqa: F403
from support.serve import __all__  # noqa: F401
