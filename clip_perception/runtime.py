"""ROS-free run-time state of the node: newest-frame slot, stamp pairing (per camera:
:class:`CameraInputs`), command state and status policy, warning throttle (:class:`WarningLog`).

``node.py`` / ``node_camera.py`` only wire these to ROS 2 subscriptions, publishers and
services, and :mod:`clip_perception.worker` runs the inference over them; everything here is
plain Python so it can be unit-tested and reused (e.g. by a bag replay) without ``rclpy``.  All methods are thread-safe: camera callbacks, the command topic, services and
the inference worker run on different threads.

Policies:

* **Newest frame only** (:class:`LatestSlot`): a camera callback overwrites a slot of depth 1;
  the worker takes whatever is newest when it is free, so frames that arrive during an
  inference replace each other and the output lags the camera by at most about one
  inference time.
* **Stamp pairing** (:class:`StampBuffer`): depth and camera_info messages are kept in small
  per-topic buffers (the last 10); the one with the stamp nearest to the colour image's
  stamp is used when it is within ``sync_slop`` seconds (the approximate-time idea of
  ``message_filters``, without the dependency).  A zero stamp never pairs.
* **Commands** (:class:`CommandState`, a :class:`dialogue.Dialogue`): a text that parses to
  ``no_command`` (empty, filler, speech-to-text artefacts such as ``[BLANK_AUDIO]`` or "Thank
  you.") or ``unsupported`` (non-English) is ignored and the current target kept; the status
  line says so.  "stop" / "cancel" clear the command (status ``stopped``); corrections and
  pronouns are resolved against the current command and target (see :mod:`dialogue`).  An
  "A and then B" utterance looks for A now; B, ... are named in the status line
  ("... (after that: blue cup — send it when A is done)") and are *not* queued: the node
  cannot know when the robot has finished with A, so the caller sends the next command.
* **Status** (:class:`CommandState.observe`): one line when the command changes (accepted
  or ignored) and when the found / not-found state of the current command changes; not one
  per frame.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .command import CommandParse, ParsedCommand, parse_command
from .dialogue import CommandSnapshot, Dialogue, DialogueUpdate, describe_ignored

__all__ = ["LatestSlot", "StampBuffer", "Throttle", "WarningLog", "CameraInputs", "CommandState", "CommandUpdate",
           "CommandSnapshot", "Waiter"]

#: depth / camera_info messages kept per camera for stamp pairing.
PAIR_BUFFER = 10


class LatestSlot:
    """A thread-safe slot of depth 1: :meth:`put` overwrites, :meth:`take` empties.

    Attributes:
        received: number of items ever put.
        dropped: number of items overwritten before anyone took them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: Any = None
        self._full = False
        self.received = 0
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._lock:
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self.received += 1

    def take(self) -> Any:
        """The newest item, or ``None`` when nothing arrived since the last take."""
        with self._lock:
            item, self._item, self._full = self._item, None, False
            return item


class StampBuffer:
    """The last ``maxlen`` (stamp, item) pairs of one topic, for pairing by time stamp.

    Args:
        maxlen: items kept (oldest dropped first).
    """

    def __init__(self, maxlen: int = 10) -> None:
        self._lock = threading.Lock()
        self._items: "collections.deque[tuple[int, Any]]" = collections.deque(maxlen=maxlen)

    def add(self, stamp_ns: int, item: Any) -> None:
        with self._lock:
            self._items.append((int(stamp_ns), item))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def newest_stamp_ns(self) -> Optional[int]:
        with self._lock:
            return self._items[-1][0] if self._items else None

    def may_still_pair(self, stamp_ns: int, alive_s: float = 2.0) -> bool:
        """Whether a partner for ``stamp_ns`` may still arrive: the stream is alive (its newest
        stamp is within ``alive_s`` before the image) but has not reached the image's stamp yet.
        Depth often arrives a few milliseconds after colour; the worker then waits up to
        ``sync_slop`` instead of publishing that frame without 3D."""
        newest = self.newest_stamp_ns
        if stamp_ns == 0 or newest is None:
            return False
        return int(stamp_ns) - int(alive_s * 1e9) <= newest < int(stamp_ns)

    def nearest(self, stamp_ns: int, slop_s: float) -> Optional[tuple[Any, float]]:
        """The item whose stamp is nearest to ``stamp_ns``, if within ``slop_s`` seconds.

        Args:
            stamp_ns: the colour image's stamp, nanoseconds; 0 (unstamped) never pairs.
            slop_s: largest accepted ``|stamp difference|``, seconds (inclusive).

        Returns:
            ``(item, difference_s)`` or ``None``.  Items with a zero stamp never pair.
        """
        if stamp_ns == 0:
            return None
        limit_ns = int(round(float(slop_s) * 1e9))
        best = None
        with self._lock:
            for item_ns, item in self._items:
                if item_ns == 0:
                    continue
                diff = abs(item_ns - int(stamp_ns))
                if diff <= limit_ns and (best is None or diff < best[0]):
                    best = (diff, item)
        if best is None:
            return None
        return best[1], best[0] * 1e-9


class Throttle:
    """Lets a message with a given key through at most once per period.

    Args:
        clock: monotonic time source in seconds (``time.monotonic``).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict = {}

    def allow(self, key: str, period_s: float) -> bool:
        """True when ``key`` was not allowed within the last ``period_s`` seconds."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < period_s:
                return False
            self._last[key] = now
            return True


class WarningLog:
    """Throttled warnings: each key logged at most once per period, the recent texts kept.

    Args:
        log: called with the text of every warning let through (the node's logger).
        period_s: returns the current throttle period in seconds (``no_image_warn_s``).
        keep: texts kept in :attr:`recent` (oldest dropped first).
    """

    def __init__(self, log: Callable[[str], None], period_s: Callable[[], float], keep: int = 200) -> None:
        self._log = log
        self._period_s = period_s
        self._keep = int(keep)
        self.throttle = Throttle()
        #: the warnings let through, most recent last (tests assert on them).
        self.recent: list = []

    def warn(self, key: str, text: str) -> bool:
        """Log ``text`` unless ``key`` was logged within the period; True when it was logged."""
        if not self.throttle.allow(key, self._period_s()):
            return False
        self._log(text)
        self.recent.append(text)
        del self.recent[:-self._keep]
        return True


class CameraInputs:
    """The ROS-free input state of one camera: the newest colour message and the depth /
    camera_info messages buffered for stamp pairing.

    The node's camera callbacks call :meth:`put_image`, :meth:`put_depth`, :meth:`put_info`
    with the message and its header stamp in integer nanoseconds; the worker takes the newest
    colour message with :meth:`take` and pairs it (:meth:`nearest_pair`).  Messages are opaque
    here (only the worker reads their fields, duck-typed).

    Args:
        name: camera namespace ("" for a single camera).
        image_topic: resolved colour topic name (for warnings).
        compressed: the colour messages are ``CompressedImage``.
        depth_compressed: the depth messages are ``compressedDepth`` ``CompressedImage``.
        wake: event set whenever a colour message arrives (wakes the worker).
    """

    def __init__(self, name: str, image_topic: str = "", *, compressed: bool = False,
                 depth_compressed: bool = False, wake: Optional[threading.Event] = None) -> None:
        self.name = name
        self.image_topic = image_topic
        self.compressed = bool(compressed)
        self.depth_compressed = bool(depth_compressed)
        self.slot = LatestSlot()
        self.depth = StampBuffer(PAIR_BUFFER)
        self.info = StampBuffer(PAIR_BUFFER)
        #: ``time.monotonic()`` of the last colour message (``None`` before the first).
        self.last_image_time: Optional[float] = None
        #: the subscription's QoS in words, for the no-image warning (set by the adapter).
        self.qos_description = ""
        self.wake = wake if wake is not None else threading.Event()

    def put_image(self, msg: Any, stamp_ns: int) -> None:
        """Store the newest colour message (overwrites an untaken one) and wake the worker."""
        self.last_image_time = time.monotonic()
        self.slot.put((msg, int(stamp_ns)))
        self.wake.set()

    def put_depth(self, msg: Any, stamp_ns: int) -> None:
        self.depth.add(stamp_ns, msg)

    def put_info(self, msg: Any, stamp_ns: int) -> None:
        self.info.add(stamp_ns, msg)

    def take(self) -> Optional[tuple]:
        """``(colour message, stamp ns)`` of the newest frame, or ``None`` when none arrived."""
        return self.slot.take()

    def nearest_pair(self, stamp_ns: int, slop_s: float, wait_s: float, stop: threading.Event) -> tuple:
        """Depth and camera_info nearest to ``stamp_ns`` within ``slop_s`` seconds.

        A stream that is alive but has not reached the frame's stamp yet
        (:meth:`StampBuffer.may_still_pair`: depth is often published just after colour) is
        waited for, at most ``wait_s`` wall-clock seconds, or until ``stop`` is set.

        Returns:
            ``(depth pair, info pair)``, each ``(message, |difference| s)`` or ``None``.
        """
        depth_pair = self.depth.nearest(stamp_ns, slop_s)
        info_pair = self.info.nearest(stamp_ns, slop_s)
        deadline = time.monotonic() + wait_s
        while ((depth_pair is None and self.depth.may_still_pair(stamp_ns))
               or (info_pair is None and self.info.may_still_pair(stamp_ns))) and time.monotonic() < deadline:
            if stop.wait(0.005):
                break
            depth_pair = depth_pair or self.depth.nearest(stamp_ns, slop_s)
            info_pair = info_pair or self.info.nearest(stamp_ns, slop_s)
        return depth_pair, info_pair

    def describe_missing(self, depth_pair, info_pair) -> tuple:
        """``(missing names, details)`` for the "no depth / camera_info within sync_slop" warning."""
        missing = [name for name, pair in (("depth", depth_pair), ("camera_info", info_pair)) if pair is None]
        details = []
        for name, buf in (("depth", self.depth), ("camera_info", self.info)):
            newest = buf.newest_stamp_ns
            details.append(f"newest {name} stamp " + ("none" if newest is None else f"{newest * 1e-9:.3f}"))
        return missing, details


@dataclass
class CommandUpdate:
    """Outcome of :meth:`CommandState.submit`.

    Attributes:
        accepted: the text changed the conversation (a command, correction or stop) -- see
            ``update.kind``.
        target: the object phrase now looked for (the previous one when not accepted;
            ``""`` when there is none, e.g. after "stop").
        status: the status line to publish ("looking for: red ball", "stopped", "ignored: ...").
        parse: the full parse of the text.
        update: the :class:`dialogue.DialogueUpdate` it came from (state, active command, kind).
    """

    accepted: bool
    target: str
    status: str
    parse: CommandParse
    update: Optional[DialogueUpdate] = None


class CommandState(Dialogue):
    """The node's command state: a :class:`dialogue.Dialogue` (stop, corrections, pronouns,
    exclusions, current target) with the node's original ``submit`` -> :class:`CommandUpdate`.

    ``snapshot()``, ``observe()`` and ``later`` are the dialogue's (same meaning as before;
    ``snapshot()`` is a :class:`dialogue.CommandSnapshot`, which adds ``state``, ``excluded`` and
    ``current``).

    Args:
        parser: text -> :class:`CommandParse` (``command.parse_command``).
    """

    def __init__(self, parser: Callable[[str], CommandParse] = parse_command) -> None:
        super().__init__(parser)

    def submit(self, text: str) -> CommandUpdate:
        """Hear ``text`` (:meth:`dialogue.Dialogue.hear`).

        Returns:
            :class:`CommandUpdate` with the status line to publish (always one).
        """
        up = self.hear(text)
        return CommandUpdate(up.accepted, up.target, up.message, up.parse, up)


@dataclass
class Waiter:
    """One pending ``locate`` request: the worker fills ``answer`` and sets ``done``.

    Attributes:
        command: parsed command to look for, or ``None`` for the current one.
        text: the request's raw command text.
    """

    command: Optional[ParsedCommand] = None
    text: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    answer: Any = None
