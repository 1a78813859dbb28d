"""One TFLite model run by LiteRT (``ai-edge-litert``), with its outputs named by shape."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ...errors import EngineUnavailable


class TfliteModel:
    """A loaded model with one float32 image input.

    ``outputs`` names each expected output by its shape (without the batch axis); a file whose
    tensors differ is refused, so that someone else's model cannot give silent nonsense.
    """

    def __init__(self, path: Path, input_size: int, outputs: Mapping[str, tuple[int, ...]], threads: int,
                 fetch_hint: str) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise EngineUnavailable(f"the blazepose engine needs ai-edge-litert ({exc})",
                                    engine="blazepose", missing="ai_edge_litert") from None
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # LiteRT's errors for a file it cannot read
            raise EngineUnavailable(f"model file {path} cannot be loaded ({exc}); {fetch_hint}",
                                    engine="blazepose", file=str(path)) from None
        (image,) = self._interpreter.get_input_details()
        if tuple(image["shape"]) != (1, input_size, input_size, 3) or image["dtype"] != np.float32:
            raise EngineUnavailable(f"model file {path} takes {tuple(image['shape'])} {image['dtype'].__name__}, "
                                    f"not (1, {input_size}, {input_size}, 3) float32; {fetch_hint}",
                                    engine="blazepose", file=str(path))
        self._input = image["index"]
        by_shape = {tuple(d["shape"][1:]): d["index"] for d in self._interpreter.get_output_details()}
        missing = [name for name, shape in outputs.items() if shape not in by_shape]
        if missing:
            raise EngineUnavailable(f"model file {path} lacks the outputs {missing} "
                                    f"(it has {sorted(by_shape)}); {fetch_hint}", engine="blazepose", file=str(path))
        self._outputs = {name: by_shape[shape] for name, shape in outputs.items()}

    def __call__(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        return {name: self._interpreter.get_tensor(index)[0] for name, index in self._outputs.items()}
