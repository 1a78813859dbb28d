"""``python -m pose_pipeline.cli``: the ``pose-pipeline`` command."""

import sys

from .main import main

sys.exit(main())
