"""A CPU stand-in for neural_renderer's compiled rasterizer (``neural_renderer.cuda.rasterize``).

neural_renderer (NMR) is a CUDA extension; on a machine without CUDA its Python package is
installed without the compiled modules (.ci/build-upstream). The texture sampler of
4D-Humans' track.py renders a depth map through it, so the tests register this module under
the compiled module's name, for upstream's side and for the engine's alike (``install``).

Only what a depth render calls is implemented: ``forward_face_index_map`` with the kernel's
conventions (pixel centres, front faces only, barycentric weights clamped and renormalised,
perspective-correct depth ``1/sum(w/z)``, ``near < z < far``, nearest face wins). Where two
faces give exactly the same depth the lower face index wins (the CUDA kernel's order is that
of its atomic counters, i.e. not defined). Gradients and colour sampling are not provided.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

import torch

MODULE = "neural_renderer.cuda.rasterize"
#: The package's other compiled modules: imported by neural_renderer's __init__, never called
#: by a depth render (loading and saving textured .obj files).
UNUSED_MODULES = {"neural_renderer.cuda.load_textures": ("load_textures",),
                  "neural_renderer.cuda.create_texture_image": ("create_texture_image",)}
#: Candidate (face, pixel) pairs evaluated at once; bounds memory for large faces.
_CANDIDATES_PER_STEP = 1 << 22


def _front_facing(f: torch.Tensor) -> torch.Tensor:
    # The kernel's backside test, on (F, 9) faces [x0 y0 z0 x1 y1 z1 x2 y2 z2] in [-1, 1].
    return ~((f[:, 7] - f[:, 1]) * (f[:, 3] - f[:, 0]) < (f[:, 4] - f[:, 1]) * (f[:, 6] - f[:, 0]))


def _face_inverse(p: torch.Tensor) -> torch.Tensor:
    """(F, 3, 2) pixel corners -> (F, 3, 3): barycentric weights = inverse @ [x, y, 1]."""
    x0, y0, x1, y1, x2, y2 = (p[:, i, j] for i in range(3) for j in range(2))
    inverse = torch.stack([
        y1 - y2, x2 - x1, x1 * y2 - x2 * y1,
        y2 - y0, x0 - x2, x2 * y0 - x0 * y2,
        y0 - y1, x1 - x0, x0 * y1 - x1 * y0], -1).view(-1, 3, 3)
    denominator = x2 * (y0 - y1) + x0 * (y1 - y2) + x1 * (y2 - y0)
    return inverse / denominator[:, None, None]


def _rasterize_one(faces: torch.Tensor, size: int, near: float, far: float):
    """(depth (S*S,), face index (S*S,), weights (S*S, 3), inverse (S*S, 3, 3)) of one image."""
    pixels = size * size
    depth = torch.full((pixels,), far, dtype=faces.dtype)
    index = torch.full((pixels,), -1, dtype=torch.int32)
    weights = torch.zeros(pixels, 3, dtype=faces.dtype)
    inverse_map = torch.zeros(pixels, 3, 3, dtype=faces.dtype)
    f = faces.reshape(-1, 9)
    visible = torch.nonzero(_front_facing(f)).flatten()
    if len(visible) == 0:
        return depth, index, weights, inverse_map
    f = f[visible]
    p = 0.5 * (f.view(-1, 3, 3)[:, :, :2] * size + size - 1)
    inverse = _face_inverse(p)
    x_min = torch.clamp(torch.ceil(p[:, :, 0].min(1).values), min=0).long()
    x_max = torch.clamp(p[:, :, 0].max(1).values, max=size - 1).floor().long()
    y_min = torch.clamp(torch.ceil(p[:, :, 1].min(1).values), min=0).long()
    y_max = torch.clamp(p[:, :, 1].max(1).values, max=size - 1).floor().long()
    width = torch.clamp(x_max - x_min + 1, min=0)
    area = width * torch.clamp(y_max - y_min + 1, min=0)
    ends = torch.cumsum(area, 0)
    start = 0
    while start < len(f):  # faces in index order, in steps of bounded candidate count
        base = int(ends[start - 1]) if start else 0
        stop = int(torch.searchsorted(ends, base + _CANDIDATES_PER_STEP, right=True))
        stop = max(stop, start + 1)
        step = torch.arange(start, stop)
        count = area[step]
        owner = torch.repeat_interleave(step, count)
        if len(owner) == 0:
            start = stop
            continue
        offset = torch.arange(len(owner)) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        xi = x_min[owner] + offset % width[owner]
        yi = y_min[owner] + torch.div(offset, width[owner], rounding_mode="floor")
        xp, yp = (2.0 * xi + 1 - size) / size, (2.0 * yi + 1 - size) / size
        g = f[owner]
        inside = ~(((yp - g[:, 1]) * (g[:, 3] - g[:, 0]) < (xp - g[:, 0]) * (g[:, 4] - g[:, 1]))
                   | ((yp - g[:, 4]) * (g[:, 6] - g[:, 3]) < (xp - g[:, 3]) * (g[:, 7] - g[:, 4]))
                   | ((yp - g[:, 7]) * (g[:, 0] - g[:, 6]) < (xp - g[:, 6]) * (g[:, 1] - g[:, 7])))
        point = torch.stack([xi.to(f.dtype), yi.to(f.dtype), torch.ones_like(xp, dtype=f.dtype)], -1)
        w = torch.einsum("nij,nj->ni", inverse[owner], point).clamp(0.0, 1.0)
        w = w / w.sum(1, keepdim=True)
        z = 1.0 / (w[:, 0] / g[:, 2] + w[:, 1] / g[:, 5] + w[:, 2] / g[:, 8])
        keep = inside & (z > near) & (z < far)
        owner, pixel, w, z = owner[keep], (yi * size + xi)[keep], w[keep], z[keep]
        # nearest candidate per pixel; among equal depths the lowest face index
        nearest = torch.full((pixels,), float("inf"), dtype=f.dtype).scatter_reduce(0, pixel, z, "amin")
        at_nearest = z == nearest[pixel]
        first = torch.full((pixels,), len(f), dtype=torch.long).scatter_reduce(
            0, pixel[at_nearest], owner[at_nearest], "amin")
        winner = at_nearest & (owner == first[pixel])
        owner, pixel, w, z = owner[winner], pixel[winner], w[winner], z[winner]
        better = (z < depth[pixel]) | ((z == depth[pixel]) & (visible[owner].int() < index[pixel]))
        owner, pixel, w, z = owner[better], pixel[better], w[better], z[better]
        depth[pixel], index[pixel], weights[pixel] = z, visible[owner].int(), w
        inverse_map[pixel] = inverse[owner]
        start = stop
    return depth, index, weights, inverse_map


def forward_face_index_map(faces, face_index_map, weight_map, depth_map, face_inv_map, faces_inv,
                           face_visibility, face_list, image_size, block_size, near, far,
                           return_rgb, return_alpha, return_depth, return_visibility):
    """Same arguments and results as the compiled function (buffers filled and returned)."""
    faces = faces.detach().cpu().float()
    for b in range(faces.shape[0]):
        depth, index, weights, inverse = _rasterize_one(faces[b], int(image_size), float(near), float(far))
        covered = index >= 0
        depth_map[b].view(-1)[covered] = depth[covered].to(depth_map.device)
        face_index_map[b].view(-1)[:] = index.to(face_index_map.device)
        weight_map[b].view(-1, 3)[covered] = weights[covered].to(weight_map.device)
        if return_depth:
            face_inv_map[b].view(-1, 3, 3)[covered] = inverse[covered].to(face_inv_map.device)
        if return_visibility:
            face_visibility[b][index[covered].long().unique()] = 1
    return [face_index_map, weight_map, depth_map, face_inv_map, face_visibility]


def _not_provided(name: str):
    def fail(*args, **kwargs):
        raise NotImplementedError(f"{name}: the CPU stand-in of neural_renderer renders depth only")
    return fail


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers the import of the compiled modules' names (after their parent package, as a
    real import would) with the stand-ins."""

    def find_spec(self, name, path=None, target=None):
        if name == MODULE or name in UNUSED_MODULES:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module) -> None:
        if module.__name__ == MODULE:
            module.forward_face_index_map = forward_face_index_map
            functions = ("forward_texture_sampling", "backward_pixel_map", "backward_textures", "backward_depth_map")
        else:
            functions = UNUSED_MODULES[module.__name__]
        for name in functions:
            setattr(module, name, _not_provided(name))
        module.__doc__ = __doc__


def install() -> None:
    """Make ``import neural_renderer`` find the stand-ins instead of the compiled modules."""
    if not any(isinstance(finder, _StandInFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _StandInFinder())


def compiled_available() -> bool:
    """Whether neural_renderer is installed with its compiled rasterizer (a CUDA build)."""
    spec = importlib.util.find_spec("neural_renderer")  # finds the package without importing it
    return any(next(Path(folder, "cuda").glob("rasterize*.so"), None) is not None
               for folder in (spec.submodule_search_locations or []) if spec is not None)


def install_unless_compiled() -> None:
    """The stand-in where the compiled rasterizer is absent (CPU builds); else nothing."""
    if not compiled_available():
        install()
