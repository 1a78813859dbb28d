"""What the tests share, reached through the fixtures of tests/conftest.py: test videos and
ways to damage them (``media``), demo videos, small settings and offline results
(``videos``), and the service on a local Ray cluster (``serve``, through the ``serve_tools`` fixture)."""
