"""The Ray Serve application: one module per deployment, the builder (``app``), and the commands that need Ray."""
