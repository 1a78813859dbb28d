"""What the overlay draws and in which colour: the track palette and the bone lists of each
joint format. Shared with the viewer page (``pose_pipeline/viewer/overlay.js`` implements the
same formula and lists; tests/api/test_viewer_browser.py checks that they agree).

Track colour, from the id alone (integers only, so that Python and JavaScript give the same
bytes): ``hue = id * 137 mod 360`` (137 degrees is close to the golden angle, so consecutive
ids get far-apart hues); then a fully saturated HSV colour with channels between 64 and 255:

    sector, f = hue div 60, hue mod 60
    up   = 64 + 191 * f div 60        down = 255 - 191 * f div 60
    sector 0: (255, up, 64)   1: (down, 255, 64)   2: (64, 255, up)
           3: (64, down, 255) 4: (up, 64, 255)     5: (255, 64, down)

Text on a label in that colour is black when ``(299 R + 587 G + 114 B) div 1000 >= 140``,
else white.
"""

from __future__ import annotations

RGB = tuple[int, int, int]

_HUE_STEP = 137
_LOW, _HIGH = 64, 255
_TEXT_LUMA_THRESHOLD = 140
#: Joints whose ``joints_confidence`` is below this are guesses (docs/result-schema.md): not drawn.
MIN_JOINT_CONFIDENCE = 0.5


def track_color(track_id: int) -> RGB:
    hue = (int(track_id) * _HUE_STEP) % 360  # Python's % is never negative
    sector, f = divmod(hue, 60)
    span = _HIGH - _LOW
    up, down = _LOW + span * f // 60, _HIGH - span * f // 60
    return ((_HIGH, up, _LOW), (down, _HIGH, _LOW), (_LOW, _HIGH, up),
            (_LOW, down, _HIGH), (up, _LOW, _HIGH), (_HIGH, _LOW, down))[sector]


def text_color(background: RGB) -> RGB:
    r, g, b = background
    return (0, 0, 0) if (299 * r + 587 * g + 114 * b) // 1000 >= _TEXT_LUMA_THRESHOLD else (255, 255, 255)


# BlazePose's 33 landmarks (docs/result-schema.md, Joint sets): face, arms and hands, torso, legs and feet.
_BLAZEPOSE33 = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10),
    (11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19),
    (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
    (11, 23), (12, 24), (23, 24),
    (23, 25), (25, 27), (27, 29), (29, 31), (27, 31),
    (24, 26), (26, 28), (28, 30), (30, 32), (28, 32),
)

# HMR2.0's 44 joints: only the first 25 (OpenPose BODY_25) are drawn; rows 25-43 are the same
# body regressed again (SPIN's 19 joints) and would draw a second, overlapping skeleton.
_OPENPOSE25 = (
    (1, 8), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7),
    (8, 9), (9, 10), (10, 11), (8, 12), (12, 13), (13, 14),
    (1, 0), (0, 15), (15, 17), (0, 16), (16, 18),
    (14, 19), (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
)

#: Bones (pairs of joint rows) per ``engine.joint_format``, with the joint count of the format.
BONES: dict[str, tuple[tuple[int, int], ...]] = {
    "blazepose33": _BLAZEPOSE33,
    "hmr2_openpose25_extra19": _OPENPOSE25,
}
JOINT_COUNTS: dict[str, int] = {"blazepose33": 33, "hmr2_openpose25_extra19": 44}


def bones_for(joint_format: str | None, joint_count: int | None = None) -> tuple[tuple[int, int], ...]:
    """The bones of ``joint_format``; when it is unknown or None, those of the format with
    ``joint_count`` joints (a result read without its header); none if neither matches."""
    if joint_format in BONES:
        return BONES[joint_format]
    for name, count in JOINT_COUNTS.items():
        if count == joint_count:
            return BONES[name]
    return ()
