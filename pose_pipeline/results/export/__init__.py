"""Exports of a result for 3D tools: BVH for results with SMPL (``bvh``), SMPL's tree and rest
skeleton (``skeleton``), the coordinate conversions of the three.js and Blender recipes
(``recipes``) and a script Blender runs over an NPZ (``blender_npz``, standalone: it imports
only what Blender's Python has). docs/result-schema.md documents them."""
