"""Engines: the interface every engine implements (``base``), the registry that builds one by name
(``registry``), the engines themselves, and what they share (GPU placement, adaptive batches,
``tracking/``). Importing the package loads none of them."""
