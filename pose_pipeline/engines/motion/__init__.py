"""The motion engine: a CPU tracker that needs no GPU and no model weights.

It exists so that everything around the model (decoding, chunking, state hand-over,
aggregation, the service) can be developed, tested and benchmarked on a fresh machine.
It computes real tracks from the pixels, but it is NOT a pose model: it finds moving
things, not people, and its results carry boxes and ids only (no SMPL, no joints).

How it works, per frame, strictly in order (so that chunking never changes a result):

1. Foreground. Frames are shrunk by an integer factor so that the longest side is at
   most ``work_side`` (block averaging with exact integer sums). A running-average
   background (float32, colour) starts as the first frame; a pixel is foreground where
   some channel differs from it by more than ``threshold`` (after a 3x3 box blur of the
   difference, against sensor noise); a morphological closing joins a person's parts.
   The background learns at ``learning_rate`` where the mask is clear and not at all
   under foreground, so that a slow, uniformly coloured person does not fade into it.
   Ghosts (the background revealed where a person stood in the first frame) are told
   apart by their outline, an edge of the background model but not of the frame, and
   absorbed at once. A pixel that stays foreground for ``absorb_frames`` frames in a row
   is absorbed too: a person standing perfectly still that long vanishes. When more than
   ``reset_fraction`` of the frame changes (a cut), the background restarts and all
   tracks end.
2. Candidates. Connected blobs of the mask (``scipy.ndimage.label``) larger than
   ``min_area`` (a fraction of the frame) are detections; the score is the blob's fill
   ratio (pixels / box area). Only blobs with a person-like height/width in
   ``aspect_range`` may start a track; any blob may continue one.
3. Tracker (SORT-like). A Kalman filter per track on the box centre (constant velocity)
   and size (random walk; extrapolating size changes while coasting goes wrong fast).
   Tracks are matched to detections by the Hungarian algorithm on 1 - IoU, gated at
   ``min_iou``. When people overlap, their blobs merge into one: a detection that covers
   ``group_coverage`` of the predicted boxes of two or more confirmed, currently followed
   tracks (or of one, and is ``merge_area_ratio`` times larger: merged with someone not
   tracked yet) is a group; its members coast on their prediction (clipped to the group's
   box, reported with ``detected=False``) instead of one of them grabbing the merged box,
   and are matched again when the blobs separate. A matched box whose size jumps (away
   from the border) is a blob that split from or joined something: the track's motion
   model restarts from it rather than take the jump for motion. People who merge before
   both are tracked (one walks in right behind another) are one box until they separate;
   then position alone decides which of them keeps the id.
4. Ids. A track is tentative until ``n_init`` consecutive hits; a miss deletes it. On
   confirmation it gets the next integer id (from 1, so tentative tracks burn none) and
   its held-back detections are back-filled into the earlier frames: inside the current
   chunk directly, for frames of earlier chunks as ``ChunkOutput.corrections`` (at most
   ``n_init - 1`` frames back: ``holdback_frames``). A confirmed track that is neither
   matched nor grouped coasts: it is reported (predicted box, ``detected=False``) for up
   to ``max_predicted`` frames and deleted after ``max_age``. There is no appearance
   model: a person who comes back after the track was deleted gets a new id.

Boxes are in the pixels of the frames the engine was given, xyxy float32; a detected box is
the blob's box scaled back from the working size (so a multiple of the shrink factor).

The session state (background image, per-pixel foreground run lengths, tracks with their
Kalman state and held-back detections) serialises to a small self-contained binary: a JSON
header (floats written with ``repr``, which round-trips exactly) and the raw arrays.
"""

from .engine import MotionEngine
from .options import MotionOptions
from .session import ENGINE_VERSION, MotionSession

__all__ = ["ENGINE_VERSION", "MotionEngine", "MotionOptions", "MotionSession"]
