"""Result types of :func:`command.parse_command`: :class:`ParsedCommand`, :class:`Correction`,
:class:`CommandParse` (plain data, JSON-serialisable through ``to_dict``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from .phrase import SpatialQualifier

STATUS_OK = "ok"
STATUS_NO_COMMAND = "no_command"
STATUS_UNSUPPORTED = "unsupported"

#: Intents of an utterance (:attr:`CommandParse.intent`).
INTENT_FIND = "find"
INTENT_PICK_PLACE = "pick_place"
INTENT_STOP = "stop"
INTENT_CORRECTION = "correction"
INTENT_NONE = "none"
INTENTS = (INTENT_FIND, INTENT_PICK_PLACE, INTENT_STOP, INTENT_CORRECTION, INTENT_NONE)
#: Kinds of a correction (:attr:`Correction.kind`).
CORRECTION_KINDS = ("other", "refine", "new")


@dataclass
class ParsedCommand:
    """One command of an utterance.

    Attributes:
        raw: the clause of the cleaned utterance it came from (original case,
            artefacts removed), e.g. ``"pick up uh the red ball"``.
        action: canonical action (values of :data:`lexicon.ACTIONS`), ``"find"`` when
            none was said, ``"place"`` for the pick part of a pick-and-place command.
        target: object phrase for CLIP: attributes + noun, articles, spatial
            words and the reference removed, e.g. ``"red ball"``; a bare
            placeholder ("the red one") becomes ``"red object"``; ``""`` only when
            ``refers_to_current`` (the object is "it" / "that one").
        noun: head noun, e.g. ``"ball"`` (``"object"`` for "one"/"thing").
        colors: canonical colour terms named for the target (``colors.COLOR_NAMES``).
        attributes: material / size / shade words (``"wooden"``, ``"small"``, ``"light"``).
        spatial: position constraint among candidates, or ``None``.
        relation: relation to a reference object (:data:`lexicon.RELATION_KINDS`), or ``None``.
        reference: reference object phrase (e.g. ``"red plate"``), or ``None``.
        location: location qualifier kept out of the noun ("on the top shelf" -> ``"top shelf"``),
            or ``None``; its position word also gives ``spatial`` when none was said.
        destination: pick-and-place only: the object phrase to place at (``action == "find"``).
        destination_relation: pick-and-place only: one of
            :data:`lexicon.DESTINATION_RELATION_KINDS` (``in``, ``on``, ``next_to``, ``left_of``,
            ``right_of``, ``in_front_of``, ``behind``).
        refers_to_current: the object was a pronoun ("it", "that one") meaning the current
            target; the object fields are empty until :class:`dialogue.Dialogue` fills them in.
    """

    raw: str
    action: str
    target: str
    noun: str
    colors: list = field(default_factory=list)
    attributes: list = field(default_factory=list)
    spatial: Optional[SpatialQualifier] = None
    relation: Optional[str] = None
    reference: Optional[str] = None
    location: Optional[str] = None
    destination: Optional["ParsedCommand"] = None
    destination_relation: Optional[str] = None
    refers_to_current: bool = False

    @property
    def is_pick_place(self) -> bool:
        """True for a pick-and-place command (a destination is set)."""
        return self.destination is not None

    def with_object(self, other: "ParsedCommand") -> "ParsedCommand":
        """This command (action, destination) with the object fields of ``other``."""
        return replace(self, target=other.target, noun=other.noun, colors=list(other.colors),
                       attributes=list(other.attributes), spatial=other.spatial, relation=other.relation,
                       reference=other.reference, location=other.location)

    def to_dict(self) -> dict:
        """JSON-ready dict of every field (``spatial`` and ``destination`` as dicts)."""
        d = {k: getattr(self, k) for k in ("raw", "action", "target", "noun", "relation", "reference", "location",
                                           "destination_relation", "refers_to_current")}
        d["colors"], d["attributes"] = list(self.colors), list(self.attributes)
        d["spatial"] = None if self.spatial is None else self.spatial.to_dict()
        d["destination"] = None if self.destination is None else self.destination.to_dict()
        return d

    def object_summary(self) -> str:
        """The object part, e.g. ``"red ball" (colours: red; leftmost) next to "red plate"``."""
        parts = []
        if self.colors:
            parts.append("colours: " + ", ".join(self.colors))
        if self.attributes:
            parts.append("attributes: " + ", ".join(self.attributes))
        if self.spatial is not None:
            parts.append(str(self.spatial))
        if self.location:
            parts.append(f"on/in the {self.location}")
        text = "the current target" if self.refers_to_current and not self.target else f'"{self.target}"'
        if parts:
            text += " (" + "; ".join(parts) + ")"
        if self.relation and self.reference:
            text += f' {self.relation} "{self.reference}"'
        return text

    def summary(self) -> str:
        """One line, e.g. ``pick up "red ball" (colours: red; leftmost) next to "red plate"``;
        pick-and-place: ``place "apple" in "bowl"``."""
        text = f"{self.action} {self.object_summary()}"
        if self.destination is not None:
            rel = (self.destination_relation or "").replace("_", " ")
            text += f" {rel} {self.destination.object_summary()}"
        return text

    __str__ = summary


@dataclass
class Correction:
    """A correction of the current command ("no, the other one", "the blue one", "actually the mug").

    Attributes:
        kind: ``"other"`` (another candidate than the current target), ``"refine"`` (the current
            command's object with the new attribute / qualifier / relation) or ``"new"`` (a new
            command, in :attr:`CommandParse.commands` / :attr:`CommandParse.actions`).
        exclude_current: the current target is to be excluded ("not that one", "the other one").
        phrase: the object phrase said with the correction ("the other cup" -> noun ``cup``;
            "the blue one" -> colours ``[blue]``), or ``None`` when nothing was named.
        noun_given: ``phrase`` names a noun of its own (not "one"); a refine/other then
            replaces the current noun.
        action: the action verb said with the correction ("grab the other one" -> ``"grab"``), or
            ``None`` (the current command's action is kept).
    """

    kind: str
    exclude_current: bool = False
    phrase: Optional[ParsedCommand] = None
    noun_given: bool = False
    action: Optional[str] = None

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"kind": self.kind, "exclude_current": self.exclude_current, "noun_given": self.noun_given,
                "action": self.action, "phrase": None if self.phrase is None else self.phrase.to_dict()}


@dataclass
class CommandParse:
    """Result of :func:`command.parse_command`.

    Attributes:
        status: ``"ok"``, ``"no_command"`` or ``"unsupported"``: ``"ok"`` when at least one
            command names its object, so a caller that knows nothing of the dialogue can ground
            :attr:`first` on its own (unchanged meaning).
        reason: why there is no command / why unsupported, plus notes (e.g.
            input truncated); empty when there is nothing to say.
        commands: commands whose object is named in words, in spoken order (empty unless
            status is ``"ok"``); ``target`` is never empty.
        intent: one of :data:`INTENTS`: ``"find"`` (an object command, any action verb),
            ``"pick_place"``, ``"stop"``, ``"correction"`` (see :attr:`correction`) or ``"none"``.
        actions: every command of the utterance in spoken order, including those whose object
            is the current target (``refers_to_current``; "pick it up", "put it in the box")
            and those whose pronoun refers to an earlier clause ("pick up the cup and then drop
            it": the cup).  Defaults to ``commands``.
        correction: the correction, when ``intent == "correction"``.
    """

    status: str
    reason: str = ""
    commands: list = field(default_factory=list)
    intent: str = ""
    actions: list = field(default_factory=list)
    correction: Optional[Correction] = None

    def __post_init__(self) -> None:
        if not self.actions and self.commands:
            self.actions = list(self.commands)
        if not self.intent:
            first = self.actions[0] if self.actions else None
            if first is None:
                self.intent = INTENT_NONE
            else:
                self.intent = INTENT_PICK_PLACE if first.is_pick_place else INTENT_FIND

    @property
    def first(self) -> Optional[ParsedCommand]:
        """The first command with a named object, or ``None``."""
        return self.commands[0] if self.commands else None

    @property
    def ok(self) -> bool:
        """``status == "ok"`` and at least one command."""
        return self.status == STATUS_OK and bool(self.commands)

    @property
    def is_stop(self) -> bool:
        """The utterance stops the current command ("stop", "cancel", "never mind")."""
        return self.intent == INTENT_STOP

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"status": self.status, "reason": self.reason, "intent": self.intent,
                "commands": [c.to_dict() for c in self.commands], "actions": [c.to_dict() for c in self.actions],
                "correction": None if self.correction is None else self.correction.to_dict()}

    def summary(self) -> str:
        """One line: the commands ("; then " between them) or ``status: reason``."""
        if self.status != STATUS_OK:
            head = f"{self.status}: {self.reason}" if self.reason else self.status
            return head if self.intent == INTENT_NONE else f"{head} [{self.intent}]"
        text = "; then ".join(c.summary() for c in self.commands)
        return text + (f" [{self.reason}]" if self.reason else "")

    __str__ = summary

