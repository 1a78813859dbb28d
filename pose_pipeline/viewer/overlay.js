// Drawing one result frame on the overlay canvas: boxes (solid when `detected`, thin and
// dashed when the box is the tracker's prediction), the 2D skeleton, and the track id on a
// label, all in the track's colour.
//
// The palette and the bone lists are the ones of pose_pipeline/overlay_style.py (the burnt-in
// MP4), written again here because the page has no build step; tests/test_viewer_browser.py
// checks that both give the same colours and bones. The colour formula, integers only so
// that Python and JavaScript agree to the byte:
//   hue = id * 137 mod 360; sector = hue div 60, f = hue mod 60
//   up = 64 + 191 * f div 60, down = 255 - 191 * f div 60
//   sector 0: (255, up, 64)  1: (down, 255, 64)  2: (64, 255, up)
//          3: (64, down, 255) 4: (up, 64, 255)   5: (255, 64, down)
// Label text is black when (299 R + 587 G + 114 B) div 1000 >= 140, else white.

export const MIN_JOINT_CONFIDENCE = 0.5;

export function trackColor(trackId) {
  const hue = (((trackId * 137) % 360) + 360) % 360; // JavaScript's % keeps the sign
  const sector = Math.floor(hue / 60);
  const f = hue % 60;
  const up = 64 + Math.floor((191 * f) / 60);
  const down = 255 - Math.floor((191 * f) / 60);
  return [
    [255, up, 64], [down, 255, 64], [64, 255, up],
    [64, down, 255], [up, 64, 255], [255, 64, down],
  ][sector];
}

export function textColor([r, g, b]) {
  return Math.floor((299 * r + 587 * g + 114 * b) / 1000) >= 140 ? [0, 0, 0] : [255, 255, 255];
}

export const css = ([r, g, b]) => `rgb(${r}, ${g}, ${b})`;

// Pairs of joint rows per engine.joint_format (docs/result-schema.md, Joint sets).
export const BONES = {
  blazepose33: [
    [0, 1], [1, 2], [2, 3], [3, 7], [0, 4], [4, 5], [5, 6], [6, 8], [9, 10],
    [11, 12], [11, 13], [13, 15], [15, 17], [15, 19], [15, 21], [17, 19],
    [12, 14], [14, 16], [16, 18], [16, 20], [16, 22], [18, 20],
    [11, 23], [12, 24], [23, 24],
    [23, 25], [25, 27], [27, 29], [29, 31], [27, 31],
    [24, 26], [26, 28], [28, 30], [30, 32], [28, 32],
  ],
  // HMR2.0's 44 joints: the first 25 (OpenPose BODY_25) only; rows 25-43 repeat the body.
  hmr2_openpose25_extra19: [
    [1, 8], [1, 2], [2, 3], [3, 4], [1, 5], [5, 6], [6, 7],
    [8, 9], [9, 10], [10, 11], [8, 12], [12, 13], [13, 14],
    [1, 0], [0, 15], [15, 17], [0, 16], [16, 18],
    [14, 19], [19, 20], [14, 21], [11, 22], [22, 23], [11, 24],
  ],
};
export const JOINT_COUNTS = { blazepose33: 33, hmr2_openpose25_extra19: 44 };

// The bones of `jointFormat`; when it is unknown (the job JSON gave only the engine's name),
// those of the format with `jointCount` joints.
export function bonesFor(jointFormat, jointCount) {
  if (jointFormat in BONES) return BONES[jointFormat];
  for (const [name, count] of Object.entries(JOINT_COUNTS)) {
    if (count === jointCount) return BONES[name];
  }
  return [];
}

// Draw `frame` (an object of the result's frames[]) on `ctx`. `scale`: canvas pixels per
// source pixel; `unit`: canvas pixels per CSS pixel (devicePixelRatio), for line widths.
export function drawFrame(ctx, frame, { scale, unit = 1, jointFormat = null }) {
  const line = 2 * unit;
  for (const person of frame.people) {
    const color = css(trackColor(person.track_id));
    // On whole pixels, so that the outline is crisp (no antialiasing across two pixels), and
    // inside the box, as the MP4 draws it (a stroke is centred on its path).
    const [x1, y1, x2, y2] = person.bbox.map((v) => Math.round(v * scale));
    ctx.strokeStyle = color;
    const width = person.detected ? Math.round(line) : Math.max(Math.round(unit), 1);
    ctx.lineWidth = width;
    ctx.setLineDash(person.detected ? [] : [6 * unit, 6 * unit]);
    ctx.strokeRect(x1 + width / 2, y1 + width / 2, Math.max(x2 - x1 - width, 0), Math.max(y2 - y1 - width, 0));
    ctx.setLineDash([]);
    if (person.joints_2d) drawSkeleton(ctx, person, scale, line, color, jointFormat);
  }
  for (const person of frame.people) drawLabel(ctx, person, scale, unit); // ids on top
}

function drawSkeleton(ctx, person, scale, line, color, jointFormat) {
  const joints = person.joints_2d;
  const confidence = person.joints_confidence;
  const drawn = (k) => k < joints.length && (!confidence || confidence[k] >= MIN_JOINT_CONFIDENCE);
  ctx.beginPath();
  for (const [a, b] of bonesFor(jointFormat, joints.length)) {
    if (!drawn(a) || !drawn(b)) continue;
    ctx.moveTo(joints[a][0] * scale, joints[a][1] * scale);
    ctx.lineTo(joints[b][0] * scale, joints[b][1] * scale);
  }
  ctx.lineWidth = line;
  ctx.lineCap = "round";
  ctx.strokeStyle = color;
  ctx.stroke();
}

function drawLabel(ctx, person, scale, unit) {
  const color = trackColor(person.track_id);
  const text = String(person.track_id);
  ctx.font = `bold ${11 * unit}px sans-serif`;
  const pad = 2 * unit;
  const w = ctx.measureText(text).width + 2 * pad;
  const h = 11 * unit + 2 * pad;
  const x = Math.min(Math.max(person.bbox[0] * scale, 0), Math.max(ctx.canvas.width - w, 0));
  let y = person.bbox[1] * scale - h;
  if (y < 0) y = Math.min(Math.max(person.bbox[1] * scale, 0), Math.max(ctx.canvas.height - h, 0));
  ctx.fillStyle = css(color);
  ctx.fillRect(x, y, w, h);
  ctx.fillStyle = css(textColor(color));
  ctx.textBaseline = "top";
  ctx.fillText(text, x + pad, y + pad);
}
