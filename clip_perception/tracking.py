"""Identity across frames: track ids, a locked referent, found / lost hysteresis, smoothing (ROS-free).

One :class:`Tracker` per camera takes each frame's :class:`pipeline.FrameResult` after the
ranking (and the 3D step) and rewrites its detections in place:

1. **Association** (:func:`affinity`, :func:`associate`).  Every detection is compared with
   every live track (last seen at most :data:`MEMORY_FRAMES` frames ago).  A pair is allowed
   when the boxes overlap (IoU >= :data:`GATE_IOU`; mask IoU when both carry a ``mask`` of the
   same shape) or, when both have a 3D position, when the points are at most
   :data:`GATE_DISTANCE_M` apart (camera optical frame).  The affinity of an allowed pair is
   the weighted mean of the terms present::

       a = (W_IOU * iou + W_DISTANCE * max(0, 1 - d / GATE_DISTANCE_M) + W_EMBEDDING * cos) / (sum of those weights)

   with ``cos`` the cosine of the two CLIP image embeddings (``Detection.embedding``, the
   vectors the ranking scored the boxes with).  Pairs are taken greedily by decreasing
   affinity (each track and detection at most once; optimal for the few detections of a
   frame in all but contrived cases).  Unmatched detections start new tracks; ids are uint32,
   counted from 1 and never 0 (``0`` = not tracked, ``TargetDetection.track_id``).
2. **Referent lock.**  The first frame of a command locks the ranking's choice (detection 0:
   the spatial / relational pick when the command has one).  While the locked track is among
   the frame's detections it stays the target and is moved first, whatever the ranking says
   now: "the red ball on the left" keeps meaning the ball that was on the left when the
   command was resolved, also when the camera has moved round.  Only for commands without a
   qualifier (:func:`has_qualifier`: no spatial word, no relation, no reference) may another
   candidate take over, when its score beats the locked one's by more than
   ``switch_margin``.  A new command, a correction or a stop (a new dialogue generation,
   :meth:`Tracker.update`'s ``generation``) or :meth:`Tracker.reset` clears the lock.
3. **Hysteresis.**  The target is reported found after ``found_frames`` consecutive frames
   in which it was seen (until then the frame's detections are withheld: "not found", with a
   note), and lost after ``lost_frames`` consecutive frames without it (until then its last
   detection is reported again, with a note).  After a loss the ranking's choice is locked
   afresh.  ``found_frames = lost_frames = 1`` is the single-frame answer.
4. **Smoothing** of each track's 3D position and size: exponential (first-order IIR)::

       p_hat(t) = s * p_hat(t - 1) + (1 - s) * p(t)        (same for the size)

   with ``s = smoothing`` in [0, 1) (0 = off: the raw values).  For white measurement noise
   of std sigma its steady-state std is ``sigma * sqrt((1 - s) / (1 + s))`` (a = 1 - s in the
   EWMA variance formula, e.g. NIST/SEMATECH e-Handbook of Statistical Methods, 6.3.2.4);
   its lag is ``s / (1 - s)`` frames.  So that a moving camera does not drag the estimate
   behind the object, the filter restarts at the raw point whenever that lies more than
   :data:`SMOOTHING_RESET_M` from the estimate (motion, not noise).

Nothing here knows about ROS or the encoder.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .boxes import box_iou

__all__ = ["TrackerConfig", "Tracker", "Track", "has_qualifier", "affinity", "associate", "GATE_IOU",
           "GATE_DISTANCE_M", "MEMORY_FRAMES", "SMOOTHING_RESET_M", "MAX_TRACK_ID"]

#: Least box (or mask) IoU for a detection to continue a track (when 3D does not decide).
GATE_IOU = 0.1
#: Largest 3D distance (metres, optical frame) between a track and a detection of the same object.
GATE_DISTANCE_M = 0.10
#: Weights of the affinity terms (module docstring, step 1).
W_IOU = 1.0
W_DISTANCE = 1.0
W_EMBEDDING = 0.5
#: A track not seen for more than this many frames (or ``lost_frames``, if larger) is forgotten.
MEMORY_FRAMES = 15
#: The smoothed estimate restarts at the raw point when they are farther apart than this [m].
SMOOTHING_RESET_M = 0.03
#: Track ids are uint32 (``TargetDetection.track_id``); after this one they wrap round to 1.
MAX_TRACK_ID = 2 ** 32 - 1


@dataclass(frozen=True)
class TrackerConfig:
    """Tracking parameters (node parameters of the same names, stage ``node``; README).

    Attributes:
        found_frames: consecutive frames with the target before it is reported found (>= 1).
        lost_frames: consecutive frames without it before it is reported lost (>= 1).
        switch_margin: score margin (fused score, unitless in [0, 1]) by which another
            candidate must beat the locked target to take over; unqualified commands only.
        smoothing: exponential smoothing factor ``s`` in [0, 1) of position and size (0 = off).

    Raises:
        ValueError: a value out of range.
    """

    found_frames: int = 1
    lost_frames: int = 1
    switch_margin: float = 0.1
    smoothing: float = 0.0

    def __post_init__(self) -> None:
        if int(self.found_frames) < 1 or int(self.lost_frames) < 1:
            raise ValueError(f"found_frames and lost_frames must be >= 1, got {self.found_frames}, "
                             f"{self.lost_frames}")
        if not 0.0 <= float(self.switch_margin) <= 1.0:
            raise ValueError(f"switch_margin must be in [0, 1], got {self.switch_margin}")
        if not 0.0 <= float(self.smoothing) < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")

    @classmethod
    def of(cls, params) -> "TrackerConfig":
        """The tracking part of a :class:`params.Config` / :class:`params.NodeConfig` (or any
        object with those attributes; missing ones keep their defaults)."""
        d = cls()
        return cls(found_frames=int(getattr(params, "found_frames", d.found_frames)),
                   lost_frames=int(getattr(params, "lost_frames", d.lost_frames)),
                   switch_margin=float(getattr(params, "switch_margin", d.switch_margin)),
                   smoothing=float(getattr(params, "smoothing", d.smoothing)))


def has_qualifier(command) -> bool:
    """True when a parsed command names a spatial qualifier, a relation or a reference object
    (then the locked referent never gives way to a better-scoring candidate)."""
    return command is not None and bool(getattr(command, "spatial", None) is not None
                                        or getattr(command, "relation", None)
                                        or getattr(command, "reference", None))


@dataclass
class Track:
    """One object followed across frames.

    Attributes:
        track_id: uint32 identity (> 0).
        box: (4,) float32 xyxy pixels of the last detection.
        position: (3,) float64 smoothed position in metres (optical frame), or ``None``.
        size: (3,) float64 smoothed size in metres, or ``None``.
        raw_position: (3,) float64 last measured position, or ``None``.
        embedding: (D,) float32 last image embedding, or ``None``.
        mask: last (H, W) bool mask, or ``None``.
        misses: consecutive frames without a matching detection.
        hits: frames with a matching detection.
        detection: the last (rewritten) :class:`types.Detection` of this track.
    """

    track_id: int
    box: np.ndarray
    position: Optional[np.ndarray] = None
    size: Optional[np.ndarray] = None
    raw_position: Optional[np.ndarray] = None
    embedding: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None
    misses: int = 0
    hits: int = 0
    detection: object = field(default=None, repr=False)


def _mask_of(obj) -> Optional[np.ndarray]:
    m = getattr(obj, "mask", None)
    return m if isinstance(m, np.ndarray) and m.ndim == 2 else None


def _overlap(track: Track, det, iou: float) -> float:
    """Mask IoU when both have masks of the same shape, else the given box IoU."""
    a, b = track.mask, _mask_of(det)
    if a is None or b is None or a.shape != b.shape:
        return iou
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b)) / union if union else 0.0


def affinity(tracks: Sequence[Track], detections: Sequence) -> np.ndarray:
    """(T, N) float64 affinity of tracks and detections (module docstring, step 1); -inf = not allowed.

    Args:
        tracks: :class:`Track` list (their last box / mask, raw position and embedding).
        detections: :class:`types.Detection` list (``box``, optional ``position``,
            ``embedding``, ``mask``).
    """
    out = np.full((len(tracks), len(detections)), -np.inf)
    if not len(tracks) or not len(detections):
        return out
    ious = box_iou(np.stack([t.box for t in tracks]), np.stack([np.asarray(d.box, np.float32) for d in detections]))
    for i, t in enumerate(tracks):
        for j, d in enumerate(detections):
            iou = _overlap(t, d, float(ious[i, j]))
            terms, weights = [W_IOU * iou], [W_IOU]
            allowed = iou >= GATE_IOU
            if t.raw_position is not None and d.position is not None:
                dist = float(np.linalg.norm(np.asarray(d.position, np.float64) - t.raw_position))
                allowed = dist <= GATE_DISTANCE_M  # 3D decides when both have it
                terms.append(W_DISTANCE * max(0.0, 1.0 - dist / GATE_DISTANCE_M))
                weights.append(W_DISTANCE)
            emb = getattr(d, "embedding", None)
            if t.embedding is not None and emb is not None and np.shape(emb) == t.embedding.shape:
                terms.append(W_EMBEDDING * float(np.dot(t.embedding, emb)))
                weights.append(W_EMBEDDING)
            if allowed:
                out[i, j] = sum(terms) / sum(weights)
    return out


def associate(scores: np.ndarray) -> list:
    """Greedy one-to-one matching: ``[(track index, detection index), ...]`` by decreasing
    affinity, pairs with -inf never taken.

    Args:
        scores: (T, N) float affinity (:func:`affinity`).
    """
    pairs = []
    if scores.size == 0:
        return pairs
    flat = np.argsort(-scores, axis=None, kind="stable")
    used_t, used_d = set(), set()
    for k in flat:
        i, j = divmod(int(k), scores.shape[1])
        if not np.isfinite(scores[i, j]):
            break
        if i in used_t or j in used_d:
            continue
        used_t.add(i)
        used_d.add(j)
        pairs.append((i, j))
    return pairs


def _smooth(old: Optional[np.ndarray], new: Optional[np.ndarray], s: float, restart: bool) -> Optional[np.ndarray]:
    if new is None:
        return None
    new = np.asarray(new, dtype=np.float64).reshape(-1)
    if old is None or restart or s <= 0.0 or old.shape != new.shape:
        return new.copy()
    return s * old + (1.0 - s) * new


class Tracker:
    """Track ids, the locked target, found / lost hysteresis and smoothing for one camera.

    Args:
        config: :class:`TrackerConfig` (change it with :meth:`configure`).

    Attributes:
        tracks: live :class:`Track` objects.
        target_id: track id of the locked target, or ``0`` (none).
        found: the target is reported found (after the hysteresis).
        switches: times the lock passed to another object within one command (margin rule).
    """

    def __init__(self, config: Optional[TrackerConfig] = None) -> None:
        self.config = config if config is not None else TrackerConfig()
        self._next_id = 1
        self.tracks: list = []
        self.generation = None
        self.reset()

    def configure(self, config: TrackerConfig) -> None:
        """Use ``config`` from the next frame on (the tracks and the lock are kept)."""
        self.config = config

    def reset(self) -> None:
        """Forget the lock, the hysteresis counters and the smoothing (a new command); ids keep counting."""
        self.tracks = []
        self.target_id = 0
        self.found = False
        self._streak = 0  # consecutive frames with the locked target
        self._misses = 0  # consecutive frames without it
        self.switches = 0

    def _new_id(self) -> int:
        tid = self._next_id
        self._next_id = 1 if tid >= MAX_TRACK_ID else tid + 1
        return tid

    def update(self, result, generation=None):
        """Track one frame's result and rewrite its detections in place (module docstring).

        Args:
            result: a :class:`pipeline.FrameResult` (``command``, ``detections`` best first,
                ``notes``); its detections get ``track_id`` and the smoothed ``position`` /
                ``size``, the target goes first, and the list is emptied while the target is
                not (yet) reported found.
            generation: the dialogue generation the frame was processed with
                (``CommandSnapshot.generation``); a change resets the tracker.

        Returns:
            ``result`` (the same object).
        """
        if generation != self.generation:
            self.generation = generation
            self.reset()
        if result.command is None:
            self.reset()
            return result
        dets = [copy.copy(d) for d in result.detections]
        self._associate(dets)
        target = self._choose(dets, result.command, result.notes)
        result.detections = self._report(dets, target, result.command, result.notes)
        return result

    def _associate(self, dets: list) -> None:
        """Give every detection a track (continued or new) and update the tracks' state."""
        memory = max(MEMORY_FRAMES, self.config.lost_frames)
        live = [t for t in self.tracks if t.misses <= memory]
        matched = dict((j, live[i]) for i, j in associate(affinity(live, dets)))
        s = float(self.config.smoothing)
        for t in live:
            t.misses += 1
        for j, det in enumerate(dets):
            t = matched.get(j)
            if t is None:
                t = Track(track_id=self._new_id(), box=np.asarray(det.box, np.float32).copy())
                live.append(t)
            raw = None if det.position is None else np.asarray(det.position, np.float64).reshape(3)
            restart = raw is None or t.position is None or \
                float(np.linalg.norm(raw - t.position)) > SMOOTHING_RESET_M
            t.position = _smooth(t.position, raw, s, restart)
            t.size = _smooth(t.size, det.size, s, restart) if raw is not None else (
                None if det.size is None else np.asarray(det.size, np.float64).copy())
            t.raw_position, t.box, t.mask = raw, np.asarray(det.box, np.float32).copy(), _mask_of(det)
            emb = getattr(det, "embedding", None)
            t.embedding = None if emb is None else np.asarray(emb, np.float32).reshape(-1)
            t.misses, t.hits = 0, t.hits + 1
            det.track_id = t.track_id
            if raw is not None:
                det.position, det.size = t.position.copy(), None if t.size is None else t.size.copy()
            t.detection = det
        self.tracks = [t for t in live if t.misses <= memory]

    def _choose(self, dets: list, command, notes: list):
        """The target detection of this frame (or ``None``), keeping the lock (step 2)."""
        if self.target_id:
            locked = next((d for d in dets if d.track_id == self.target_id), None)
            if locked is not None:
                best = dets[0]
                if best is not locked and not has_qualifier(command) and \
                        float(best.score) > float(locked.score) + self.config.switch_margin:
                    notes.append(f"tracking: '{best.label}' {best.score:.2f} beats the locked target "
                                 f"{locked.score:.2f} by more than switch_margin {self.config.switch_margin:g}: "
                                 "switched")
                    self.target_id = best.track_id
                    self.switches += 1
                    return best
                return locked
            if self._misses + 1 < self.config.lost_frames:
                return None  # not seen, not lost yet: keep the lock (coast)
            self.found, self._streak = False, 0  # lost: the ranking's choice is locked afresh
        if not dets:
            return None
        self.target_id = dets[0].track_id
        return dets[0]

    def _report(self, dets: list, target, command, notes: list) -> list:
        """Apply the found / lost hysteresis (step 3): the detections to publish."""
        cfg = self.config
        name = getattr(command, "target", "") or "target"
        if target is not None:
            self._streak, self._misses = self._streak + 1, 0
            self.found = self.found or self._streak >= cfg.found_frames
            if not self.found:
                notes.append(f"tracking: {name} seen in {self._streak} of found_frames={cfg.found_frames} "
                             "consecutive frames: not reported yet")
                return []
            return [target] + [d for d in dets if d is not target]
        self._misses += 1
        if self._misses >= cfg.lost_frames or not self.found:
            self.found, self._streak = False, 0
            return []
        last = next((t.detection for t in self.tracks if t.track_id == self.target_id), None)
        if last is None:
            return dets
        notes.append(f"tracking: {name} not seen for {self._misses} frame(s): last detection kept "
                     f"(lost_frames={cfg.lost_frames})")
        return [last] + [d for d in dets if d.track_id != self.target_id]
