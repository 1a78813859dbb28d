"""What the ``phalp`` tests need to run upstream PHALP + HMR2.0 and our engine on a CPU
without the real weights: random weights in upstream's formats (``weights``), a synthetic
SMPL-format body (``smpl``), a CPU stand-in for neural_renderer's compiled rasterizer
(``rasterizer``, and ``site/`` for the processes the tests start), and the harness that runs
upstream's own track.py path (``upstream_track``). They belong to the tests only."""
