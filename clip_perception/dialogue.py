"""The conversation with the robot: current command, current target, stop, corrections, pronouns.

ROS-free and thread-safe (one lock): the command topic, services and the inference worker call
it from different threads.

* :meth:`Dialogue.hear` takes an utterance, parses it (:func:`command.parse_command`) and
  returns a :class:`DialogueUpdate`: accepted or not, the status line to say, the state
  (``idle`` before any command, ``active``, ``stopped``) and the active command.
* The **current target** is the object the caller last reported (:meth:`Dialogue.report` or
  :meth:`Dialogue.observe` with a :class:`TargetRef`: box ``[x1, y1, x2, y2]`` in pixels, an
  optional 3D position in metres in the camera frame, a label).  A new command clears it.
* **Pronouns** ("put it in the box", "pick it up") take the current command's object and keep
  the current target; with no current command or nothing found yet they are ignored with a
  reason.
* **Stop** ("stop", "cancel", "never mind") clears the command, the target and the exclusions
  (state ``stopped``); a later command starts again.
* **Corrections**: "no, the other one" / "not that one" / "the other X" add the current target
  to an exclusion list (at most ``max_excluded``, oldest dropped); "the blue one", "the one on
  the left", "the bigger one", "the one next to the plate" refine the current command's object;
  "actually the green cup" / "I meant the mug" start a new command.  Exclusions stay until the
  next new command or stop.
* Excluded objects are identified across frames by position (:func:`match_targets`): the same
  object when both have a 3D position within ``distance_m``, otherwise when the box IoU is at
  least ``iou_threshold``.  :meth:`Dialogue.exclusion_mask` gives the ranking a ``(N,)`` bool
  mask and moves each excluded reference to the candidate it matched (so a slowly moving object
  stays excluded); :func:`excluded` is the pure version.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import numpy as np

from .command import CommandParse, ParsedCommand, parse_command
from .lexicon import COLOR_WORDS, MATERIAL_WORDS, SHADE_WORDS, SIZE_WORDS
from .parsed import INTENT_CORRECTION, INTENT_STOP, Correction
from .boxes import box_iou

#: Default IoU from which a candidate box is the same object as a remembered one.
DEFAULT_IOU_THRESHOLD = 0.5
#: Default 3D distance (metres) up to which a candidate is the same object as a remembered one.
DEFAULT_DISTANCE_M = 0.05
#: Default cap on the exclusion list (oldest dropped first).
DEFAULT_MAX_EXCLUDED = 16

STATE_IDLE = "idle"
STATE_ACTIVE = "active"
STATE_STOPPED = "stopped"


@dataclass(frozen=True)
class TargetRef:
    """An object identified by position.

    Attributes:
        box: ``(x1, y1, x2, y2)`` pixels, float (exclusive x2/y2, as :func:`proposals.box_iou`).
        position: ``(x, y, z)`` metres in the camera's optical frame, or ``None`` (no depth).
        label: what it was reported as ("red ball"); for messages only.
    """

    box: tuple
    position: Optional[tuple] = None
    label: str = ""

    @classmethod
    def of(cls, box: Sequence[float], position: Optional[Sequence[float]] = None, label: str = "") -> "TargetRef":
        """Build from any 4-sequence box and optional 3-sequence position.

        Raises:
            ValueError: box is not 4 finite numbers, or position not 3 numbers.
        """
        b = tuple(float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1))
        if len(b) != 4 or not all(math.isfinite(v) for v in b):
            raise ValueError(f"box must be 4 finite numbers [x1, y1, x2, y2], got {box!r}")
        p = None
        if position is not None:
            p = tuple(float(v) for v in np.asarray(position, dtype=np.float64).reshape(-1))
            if len(p) != 3:
                raise ValueError(f"position must be 3 numbers [x, y, z] in metres, got {position!r}")
            if not all(math.isfinite(v) for v in p):
                p = None
        return cls(b, p, str(label))


def match_targets(boxes, positions, refs: Sequence[TargetRef], iou_threshold: float = DEFAULT_IOU_THRESHOLD,
                  distance_m: float = DEFAULT_DISTANCE_M) -> np.ndarray:
    """Which remembered object each candidate is.

    Args:
        boxes: (N, 4) candidate boxes ``[x1, y1, x2, y2]``, pixels (float32 or any float).
        positions: (N, 3) candidate positions in metres (rows with NaN = unknown), or ``None``.
        refs: remembered objects.
        iou_threshold: a candidate is a ref when ``IoU >= iou_threshold`` (used when either
            position is unknown).
        distance_m: a candidate is a ref when both positions are known and their Euclidean
            distance is ``<= distance_m`` (then the IoU is not used).

    Returns:
        (N,) int64: index into ``refs`` of the matched ref (the one with the highest IoU, or the
        nearest in 3D), ``-1`` when none.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    out = np.full(len(b), -1, dtype=np.int64)
    if len(b) == 0 or not refs:
        return out
    iou = box_iou(b, np.asarray([r.box for r in refs], dtype=np.float32))  # (N, R)
    score = np.where(iou >= iou_threshold, iou, -np.inf)
    if positions is not None:
        p = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        rp = np.array([r.position if r.position is not None else (np.nan,) * 3 for r in refs], dtype=np.float64)
        both = np.isfinite(p).all(axis=1)[:, None] & np.isfinite(rp).all(axis=1)[None, :]
        dist = np.linalg.norm(p[:, None, :] - rp[None, :, :], axis=2)
        by_3d = np.where(dist <= distance_m, 2.0 - dist, -np.inf)  # nearer is better, above any IoU
        score = np.where(both, by_3d, score)
    best = np.argmax(score, axis=1)
    hit = np.isfinite(score[np.arange(len(b)), best])
    out[hit] = best[hit]
    return out


def excluded(boxes, positions, refs: Sequence[TargetRef], iou_threshold: float = DEFAULT_IOU_THRESHOLD,
             distance_m: float = DEFAULT_DISTANCE_M) -> np.ndarray:
    """(N,) bool: candidate ``i`` is one of the excluded objects ``refs`` (see :func:`match_targets`)."""
    return match_targets(boxes, positions, refs, iou_threshold, distance_m) >= 0


def prefer_current(detections: Sequence, current: TargetRef, iou_threshold: float = DEFAULT_IOU_THRESHOLD,
                   distance_m: float = DEFAULT_DISTANCE_M) -> list:
    """Put the detection that is the ``current`` target (:func:`match_targets`) first.

    Used for pronoun commands ("put it in the box"): the object reported so far stays the one
    to pick even when another candidate scores higher on this frame.

    Args:
        detections: ranked detections (``box`` (4,) pixels, ``position`` (3,) metres or None).
        current: the current target.

    Returns:
        A new list, the same detections; unchanged order when none matches.
    """
    dets = list(detections)
    if not dets:
        return dets
    boxes = np.stack([np.asarray(d.box, np.float32).reshape(4) for d in dets])
    positions = np.array([np.asarray(d.position, np.float64).reshape(3) if d.position is not None
                          else (np.nan,) * 3 for d in dets])
    hits = np.flatnonzero(match_targets(boxes, positions, [current], iou_threshold, distance_m) >= 0)
    if hits.size == 0:
        return dets
    i = int(hits[0])
    return [dets[i], *dets[:i], *dets[i + 1:]]


def describe_ignored(text: str, parse: CommandParse, reason: Optional[str] = None) -> str:
    """Short reason why ``text`` was not taken as a command, e.g. ``no command ([BLANK_AUDIO])``."""
    shown = " ".join(str(text).split())
    if len(shown) > 40:
        shown = shown[:37] + "..."
    shown = shown or "empty"
    kind = "unsupported" if parse.status == "unsupported" else "no command"
    line = f"{kind} ({shown})"
    why = reason if reason is not None else parse.reason
    if why:
        line += f": {why}"
    return line


@dataclass(frozen=True)
class CommandSnapshot:
    """The conversation state the worker uses for one frame.

    Attributes:
        text: raw text of the last accepted utterance ("" when none).
        command: the active command, or ``None`` (none yet, or stopped).
        generation: increases with every accepted utterance (status of stale frames is dropped).
        state: ``"idle"``, ``"active"`` or ``"stopped"``.
        excluded: objects the ranking must not choose ("not that one").
        current: the current target (last reported for this command), or ``None``.
    """

    text: str = ""
    command: Optional[ParsedCommand] = None
    generation: int = 0
    state: str = STATE_IDLE
    excluded: tuple = ()
    current: Optional[TargetRef] = None


@dataclass
class DialogueUpdate:
    """Outcome of :meth:`Dialogue.hear`.

    Attributes:
        accepted: the utterance changed the conversation (a command, a correction, a stop).
        message: the status line to say ("looking for: red ball", "stopped", "ignored: ...").
        state: the state after it (``idle`` / ``active`` / ``stopped``).
        command: the active command after it (``None`` when none / stopped).
        kind: ``find``, ``pick_place``, ``pronoun``, ``other``, ``refine``, ``new``, ``stop`` or
            ``ignored``.
        parse: the full parse of the utterance.
        generation: the snapshot generation after it.
    """

    accepted: bool
    message: str
    state: str
    command: Optional[ParsedCommand]
    kind: str
    parse: CommandParse
    generation: int = 0

    @property
    def target(self) -> str:
        """The object phrase now looked for ("" when none)."""
        return self.command.target if self.command is not None else ""

    @property
    def stopped(self) -> bool:
        """The conversation is stopped after this utterance."""
        return self.state == STATE_STOPPED


def describe_command(cmd: ParsedCommand) -> str:
    """The object part of a status line: ``red ball``, ``red ball (leftmost)``, ``cup next to
    plate`` or ``apple; place: in bowl``."""
    text = cmd.target
    if cmd.spatial is not None:
        text += f" ({cmd.spatial})"
    if cmd.relation and cmd.reference:
        text += f" {cmd.relation} {cmd.reference}"
    text += " (the current target)" if cmd.refers_to_current else ""
    if cmd.destination is not None:
        text += f"; place: {(cmd.destination_relation or '').replace('_', ' ')} {cmd.destination.target}"
    return text


_ATTRIBUTE_WORDS = frozenset(COLOR_WORDS) | SHADE_WORDS | SIZE_WORDS | frozenset(MATERIAL_WORDS)


def _core_words(target: str) -> list:
    """Target words without colour / shade / size / material words before "of" ("red cup of tea" -> cup of tea)."""
    words = target.split()
    cut = words.index("of") if "of" in words[1:] else len(words)
    head = [w for w in words[:cut] if w not in _ATTRIBUTE_WORDS]
    while head and head[0] == "and":
        head = head[1:]
    return [w for i, w in enumerate(head) if not (w == "and" and i + 1 < len(head) and head[i + 1] == "and")] \
        + words[cut:]


def refine(base: ParsedCommand, phrase: Optional[ParsedCommand], noun_given: bool = False,
           action: Optional[str] = None) -> ParsedCommand:
    """The current command ``base`` with what a correction said ("the blue one" -> blue + base's noun).

    Each group the phrase names replaces base's: colours; attributes; spatial qualifier;
    relation + reference; location; the noun (and its phrase) when ``noun_given``.  The target
    text is rebuilt as size/shade words, colours, materials, then base's (or the phrase's) noun
    phrase; it is base's unchanged when colours, attributes and noun are kept.
    """
    if phrase is None:
        return replace(base, action=action or base.action)
    # a correction naming another kind of object ("the other cup" after "the red ball") keeps none
    # of the old object's colours or attributes; the same noun ("the other ball") keeps them
    other_kind = noun_given and phrase.noun != base.noun
    colors = list(phrase.colors) or ([] if other_kind else list(base.colors))
    attrs = list(phrase.attributes) if phrase.attributes else [] if other_kind else [
        a for a in base.attributes if not (phrase.colors and a in SHADE_WORDS)]
    core = _core_words(phrase.target if noun_given else base.target) or [base.noun or "object"]
    changed = noun_given or colors != list(base.colors) or attrs != list(base.attributes)
    ordered = [a for a in attrs if a in SIZE_WORDS] + [a for a in attrs if a in SHADE_WORDS] + colors \
        + [a for a in attrs if a not in SIZE_WORDS and a not in SHADE_WORDS]
    target = " ".join(ordered + core) if changed else base.target
    out = replace(base, action=action or base.action, target=target,
                  noun=phrase.noun if noun_given else base.noun, colors=colors, attributes=attrs)
    if phrase.spatial is not None:
        out.spatial = phrase.spatial
    if phrase.relation is not None:
        out.relation, out.reference = phrase.relation, phrase.reference
    if phrase.location is not None:
        out.location = phrase.location
    return out


class Dialogue:
    """The conversation state (see the module docstring).

    Args:
        parser: text -> :class:`CommandParse` (``command.parse_command``).
        iou_threshold: box IoU from which a candidate is a remembered object (exclusions).
        distance_m: 3D distance (metres) up to which a candidate is a remembered object, used
            instead of the IoU when both positions are known.
        max_excluded: longest exclusion list (oldest dropped first; the state stays bounded).
    """

    def __init__(self, parser: Callable[[str], CommandParse] = parse_command,
                 iou_threshold: float = DEFAULT_IOU_THRESHOLD, distance_m: float = DEFAULT_DISTANCE_M,
                 max_excluded: int = DEFAULT_MAX_EXCLUDED) -> None:
        self._parser = parser
        self.iou_threshold = float(iou_threshold)
        self.distance_m = float(distance_m)
        self.max_excluded = max(1, int(max_excluded))
        self._lock = threading.RLock()
        self._snap = CommandSnapshot()
        self._later: list = []
        self._found: Optional[bool] = None  # found state of the current command's last frame
        self._seen = False  # the current command's object was found at least once

    # ------------------------------------------------------------------ queries
    def snapshot(self) -> CommandSnapshot:
        """The state for the next frame (immutable)."""
        with self._lock:
            return self._snap

    @property
    def state(self) -> str:
        """``"idle"``, ``"active"`` or ``"stopped"``."""
        return self.snapshot().state

    @property
    def current_target(self) -> Optional[TargetRef]:
        """The object last reported for the current command, or ``None``."""
        return self.snapshot().current

    @property
    def excluded_targets(self) -> tuple:
        """The excluded objects ("not that one"), oldest first."""
        return self.snapshot().excluded

    @property
    def later(self) -> list:
        """Targets named after the first in the last accepted "and then" utterance (not queued)."""
        with self._lock:
            return list(self._later)

    def exclusion_mask(self, boxes, positions=None, track: bool = True) -> np.ndarray:
        """(N,) bool: candidate ``i`` is an excluded object (see :func:`match_targets`).

        Args:
            boxes: (N, 4) candidate boxes ``[x1, y1, x2, y2]``, pixels.
            positions: (N, 3) positions in metres (NaN rows = unknown), or ``None``.
            track: move each excluded object to the candidate it matched (this frame's box and
                position), so it stays excluded while it or the camera moves.
        """
        with self._lock:
            refs = list(self._snap.excluded)
            idx = match_targets(boxes, positions, refs, self.iou_threshold, self.distance_m)
            if track and refs and (idx >= 0).any():
                b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
                p = None if positions is None else np.asarray(positions, dtype=np.float64).reshape(-1, 3)
                for i in np.flatnonzero(idx >= 0):
                    old = refs[idx[i]]
                    refs[idx[i]] = TargetRef.of(b[i], None if p is None else p[i], old.label)
                self._snap = replace(self._snap, excluded=tuple(refs))
            return idx >= 0

    # ------------------------------------------------------------------ reports from the frames
    def report(self, target: Optional[TargetRef], generation: Optional[int] = None) -> None:
        """Record the object reported for the current command on a frame.

        Args:
            target: the chosen object, or ``None`` when nothing was found (the last reported one
                stays the current target).
            generation: the snapshot generation the frame was processed with; a stale frame
                (older command) is ignored.  ``None``: the current one.
        """
        with self._lock:
            if generation is not None and generation != self._snap.generation:
                return
            if self._snap.command is None or target is None:
                return
            self._seen = True
            self._snap = replace(self._snap, current=target)

    def observe(self, generation: int, found: bool, line: str, target: Optional[TargetRef] = None) -> Optional[str]:
        """Record a processed frame's found / not-found state (and object) for command ``generation``.

        Returns:
            ``line`` when the found state changed for the current command (first frame after a
            new command included), else ``None`` (also for frames of an older command).
        """
        with self._lock:
            if generation != self._snap.generation or self._snap.command is None:
                return None
            if found:
                self._seen = True
                if target is not None:
                    self._snap = replace(self._snap, current=target)
            if self._found is not None and self._found == bool(found):
                return None
            self._found = bool(found)
            return line

    # ------------------------------------------------------------------ utterances
    def hear(self, text: str) -> DialogueUpdate:
        """Parse ``text`` and update the conversation (see the module docstring).

        Returns:
            :class:`DialogueUpdate` (always one status line).  Never raises for any text.
        """
        text = "" if text is None else str(text)
        parse = self._parser(text)
        with self._lock:
            if parse.intent == INTENT_STOP:
                return self._stop(text, parse)
            if parse.intent == INTENT_CORRECTION and parse.correction is not None:
                return self._correct(text, parse, parse.correction)
            return self._command(text, parse, exclude=())

    def _command(self, text: str, parse: CommandParse, exclude: tuple) -> DialogueUpdate:
        first = parse.actions[0] if parse.actions else None
        if first is not None and first.refers_to_current and not first.target:
            return self._pronoun(text, parse, first)
        if not parse.ok:
            return self._ignore(text, parse)
        cmd = parse.commands[0]
        later = [c.target for c in parse.commands[1:]]
        return self._accept(text, parse, cmd, "pick_place" if cmd.is_pick_place else "find", later=later,
                            excluded=exclude)

    def _pronoun(self, text: str, parse: CommandParse, cmd: ParsedCommand) -> DialogueUpdate:
        cur = self._snap.command
        if cur is None:
            return self._ignore(text, parse, "'it' / 'that one' means the current target, but there is no current "
                                             "command")
        if not self._seen:
            return self._ignore(text, parse, f"'it' / 'that one' means the current target, but no {cur.target} "
                                             f"has been found yet")
        resolved = cmd.with_object(cur)
        resolved.refers_to_current = True
        return self._accept(text, parse, resolved, "pronoun", keep_target=True, excluded=self._snap.excluded)

    def _correct(self, text: str, parse: CommandParse, corr: Correction) -> DialogueUpdate:
        cur, target = self._snap.command, self._snap.current
        if corr.kind == "new":
            exclude = (target,) if corr.exclude_current and target is not None else ()
            update = self._command(text, parse, exclude)
            if update.accepted and update.kind in ("find", "pick_place"):
                update.kind = "new"
            return update
        if cur is None:  # nothing to correct: the stand-alone reading, if any ("the blue one" -> blue object)
            if corr.kind == "other" and corr.noun_given and corr.phrase is not None:
                return self._accept(text, parse, corr.phrase, "find")
            if parse.ok:
                return self._accept(text, parse, parse.commands[0], "find")
            return self._ignore(text, parse, "nothing to correct: there is no current command")
        new = refine(cur, corr.phrase, corr.noun_given, corr.action)
        if corr.kind == "other" or corr.exclude_current:
            if target is None:
                if corr.kind == "other":
                    why = (f"no current target to exclude (no {cur.target} has been reported yet)" if not self._seen
                           else "the current target's position is unknown, so it cannot be excluded")
                    return self._ignore(text, parse, why)
                return self._accept(text, parse, new, corr.kind, excluded=self._snap.excluded)
            excluded = self._add_exclusion(target)
            return self._accept(text, parse, new, corr.kind, excluded=excluded)
        return self._accept(text, parse, new, corr.kind, excluded=self._snap.excluded)

    def _add_exclusion(self, target: TargetRef) -> tuple:
        refs = list(self._snap.excluded)
        if not excluded(np.asarray([target.box], np.float32),
                        None if target.position is None else np.asarray([target.position]), refs,
                        self.iou_threshold, self.distance_m)[0]:
            refs.append(target)
        return tuple(refs[-self.max_excluded:])

    def _stop(self, text: str, parse: CommandParse) -> DialogueUpdate:
        gen = self._snap.generation + 1
        self._snap = CommandSnapshot(text=text, command=None, generation=gen, state=STATE_STOPPED)
        self._later, self._found, self._seen = [], None, False
        return DialogueUpdate(True, "stopped", STATE_STOPPED, None, "stop", parse, gen)

    def _accept(self, text: str, parse: CommandParse, cmd: ParsedCommand, kind: str, later: Sequence = (),
                keep_target: bool = False, excluded: tuple = ()) -> DialogueUpdate:
        gen = self._snap.generation + 1
        current = self._snap.current if keep_target else None
        self._snap = CommandSnapshot(text=text, command=cmd, generation=gen, state=STATE_ACTIVE,
                                     excluded=tuple(excluded), current=current)
        self._later = list(later)
        self._found = None
        self._seen = self._seen if keep_target else False
        status = f"looking for: {describe_command(cmd)}"
        if excluded:
            status += f" (not the {len(excluded)} excluded)" if len(excluded) > 1 else " (not that one)"
        if self._later:
            status += f" (after that: {', '.join(self._later)} — send it when this one is done)"
        return DialogueUpdate(True, status, STATE_ACTIVE, cmd, kind, parse, gen)

    def _ignore(self, text: str, parse: CommandParse, reason: Optional[str] = None) -> DialogueUpdate:
        snap = self._snap
        keep = ""
        if snap.command is not None:
            keep = f"; still looking for: {describe_command(snap.command)}"
        elif snap.state == STATE_STOPPED:
            keep = "; stopped"
        return DialogueUpdate(False, f"ignored: {describe_ignored(text, parse, reason)}{keep}", snap.state,
                              snap.command, "ignored", parse, snap.generation)
