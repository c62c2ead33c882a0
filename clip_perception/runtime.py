"""ROS-free run-time state of the node: newest-frame slot, stamp pairing, command state and
status policy, warning throttle.

``node.py`` only wires these to ROS 2 subscriptions, publishers and services; everything
here is plain Python so it can be unit-tested and reused (e.g. by a bag replay) without
``rclpy``.  All methods are thread-safe: camera callbacks, the command topic, services and
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
* **Commands** (:class:`CommandState`): a text that parses to ``no_command`` (empty, filler,
  speech-to-text artefacts such as ``[BLANK_AUDIO]`` or "Thank you.") or ``unsupported``
  (non-English) is ignored and the current target kept; the status line says so.  An
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

__all__ = ["LatestSlot", "StampBuffer", "Throttle", "CommandState", "CommandUpdate", "CommandSnapshot"]


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


@dataclass
class CommandUpdate:
    """Outcome of :meth:`CommandState.submit`.

    Attributes:
        accepted: the text held a command and it is now the current one.
        target: the object phrase now looked for (the previous one when not accepted;
            ``""`` when there is none).
        status: the status line to publish ("looking for: red ball", "ignored: ...").
        parse: the full parse of the text.
    """

    accepted: bool
    target: str
    status: str
    parse: CommandParse


@dataclass
class CommandSnapshot:
    """The command the worker uses for one frame.

    Attributes:
        text: raw text as received ("" when none).
        command: first parsed command, or ``None`` when there is no command yet.
        generation: increases with every accepted command (status of stale frames is dropped).
    """

    text: str = ""
    command: Optional[ParsedCommand] = None
    generation: int = 0


def describe_ignored(text: str, parse: CommandParse) -> str:
    """Short reason why ``text`` was not taken as a command, e.g. ``no command ([BLANK_AUDIO])``."""
    shown = " ".join(str(text).split())
    if len(shown) > 40:
        shown = shown[:37] + "..."
    shown = shown or "empty"
    kind = "no command" if parse.status == "no_command" else "unsupported"
    line = f"{kind} ({shown})"
    if parse.reason:
        line += f": {parse.reason}"
    return line


class CommandState:
    """The current command and the status policy (see the module docstring).

    Args:
        parser: text -> :class:`CommandParse` (``command.parse_command``).
    """

    def __init__(self, parser: Callable[[str], CommandParse] = parse_command) -> None:
        self._parser = parser
        self._lock = threading.Lock()
        self._snap = CommandSnapshot()
        self._later: list = []
        self._found: Optional[bool] = None

    def snapshot(self) -> CommandSnapshot:
        with self._lock:
            return self._snap

    @property
    def later(self) -> list:
        """Targets named after the first in the last accepted "and then" utterance (not queued)."""
        with self._lock:
            return list(self._later)

    def submit(self, text: str) -> CommandUpdate:
        """Parse ``text``; make it the current command when it holds one.

        Returns:
            :class:`CommandUpdate` with the status line to publish (always one).
        """
        text = "" if text is None else str(text)
        parse = self._parser(text)
        with self._lock:
            current = self._snap.command
            if not parse.ok:
                keep = f"; still looking for: {current.target}" if current is not None else ""
                return CommandUpdate(False, current.target if current else "",
                                     f"ignored: {describe_ignored(text, parse)}{keep}", parse)
            first = parse.commands[0]
            self._snap = CommandSnapshot(text=text, command=first, generation=self._snap.generation + 1)
            self._later = [c.target for c in parse.commands[1:]]
            self._found = None
            status = f"looking for: {first.target}"
            if self._later:
                status += f" (after that: {', '.join(self._later)} — send it when this one is done)"
            return CommandUpdate(True, first.target, status, parse)

    def observe(self, generation: int, found: bool, line: str) -> Optional[str]:
        """Record a processed frame's found / not-found state for command ``generation``.

        Returns:
            ``line`` when the state changed for the current command (first frame after a new
            command included), else ``None`` (also for frames of an older command).
        """
        with self._lock:
            if generation != self._snap.generation or self._snap.command is None:
                return None
            if self._found is not None and self._found == bool(found):
                return None
            self._found = bool(found)
            return line


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
