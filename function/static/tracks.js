// Tracked frames on the Predict page (an uploaded video answered with track=true, or the live stream): which
// answered frame belongs on screen now, and each track's trail, the centres of its box over its last frames.
"use strict";

const TRAIL_FRAMES = 30; // as Ultralytics' own track-plotting examples keep 30 points per track

const Tracks = {
  // A video's answered frame for `time` seconds of playback: the last whose timestamp is not after it.
  indexAt(images, time) {
    let low = 0, high = images.length - 1, found = 0;
    while (low <= high) {
      const mid = (low + high) >> 1;
      if (images[mid].timestamp <= time + 1e-6) {
        found = mid;
        low = mid + 1;
      } else {
        high = mid - 1;
      }
    }
    return found;
  },

  // The centre of a result's box: the middle of an axis-aligned box, the mean of an oriented box's corners.
  centre(box) {
    if ("x4" in box) return [(box.x1 + box.x2 + box.x3 + box.x4) / 4, (box.y1 + box.y2 + box.y3 + box.y4) / 4];
    return [(box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2];
  },

  // For each track in frames[index]: {id: [[x, y], ...]}, oldest first, over at most TRAIL_FRAMES answered frames
  // up to this one (a track that was missed in some frame simply has fewer points).
  trails(frames, index) {
    const wanted = new Set((frames[index]?.results || []).filter((r) => r.track_id !== undefined).map((r) => r.track_id));
    const trails = {};
    for (let i = Math.max(0, index - TRAIL_FRAMES + 1); i <= index; i++) {
      for (const r of frames[i]?.results || []) {
        if (!wanted.has(r.track_id) || !r.box) continue;
        (trails[r.track_id] ||= []).push(Tracks.centre(r.box));
      }
    }
    return trails;
  },
};
