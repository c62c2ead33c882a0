"""Understanding spoken-style commands ("um, pick up the red ball on the left").

The text usually comes from a speech-to-text engine (e.g. Whisper), so the
parser expects and removes what such engines produce besides the command:

* case, punctuation, repeated whitespace, control / format characters
  (Unicode categories ``C*``; text is NFKC-normalised first);
* non-speech tags: ``[BLANK_AUDIO]``, ``[silence]``, ``[Music]`` (any short
  ``[...]`` tag), ``(inaudible)``, ``(coughs)`` (parenthesised tags naming a
  non-speech sound), ``*cough*`` (any short ``*...*``), ``<|endoftext|>``,
  ``♪ ... ♪``;
* Whisper's typical hallucinations on silence when they are the whole
  utterance or a whole clause ("Thank you.", "Thanks for watching!", "you",
  "Bye.", ".");
* filler words, whole words only (``um``, ``uh``, ``er``, ``erm``, ``hmm``,
  ``please``, ``just``, ``kindly``, "you know", "could you", "can you",
  "would you", ...), "like" only as a filler (next to a comma, at the start of
  a clause or before an article: "the, like, red ball"), and discourse
  markers at the start of a clause (``okay``/``ok``, ``so``, ``well``,
  ``now``, ...).  Words that merely contain a filler ("plum", "umbrella",
  "bowl", "likely") are untouched;
* wake words: "robot, ...", "hey robot", "ok robot", "..., robot".

Each clause is then split into an action verb phrase (canonical forms in
:data:`ACTIONS`; ``"find"`` when none) and an object phrase, from which the
parser takes colours, material/size/shade attributes, a spatial qualifier
("the cup on the left", "the second bottle from the right", "the nearest
can", "the leftmost cup") and a reference object with its relation ("the cup
next to the red plate", "the block left of the bowl").  Two commands joined by
"and then", ", then", "after that", a sentence end or "and" + a new verb /
article become an ordered list; "the red and white mug" stays one object.

Status values:

* ``"ok"``: at least one command with an object phrase;
* ``"no_command"``: empty / filler / artefact / hallucination / pronoun only
  ("pick it up") / a one-word reply ("no") / a control word ("stop",
  "cancel": the reason says so) -- the caller ignores it and keeps its
  current target;
* ``"unsupported"``: text the English CLIP text encoder cannot handle (mostly
  non-Latin script, or no recognisable English words) -- reported, not guessed.

Robustness: :func:`parse_command` never raises (any Unicode, control
characters, right-to-left text, emoji, lone surrogates).  Work is bounded and
linear: only the first :data:`MAX_INPUT_CHARS` characters of the input are
read, only the first :data:`MAX_COMMAND_CHARS` characters of the cleaned text
are parsed (the reason says so when either cap applies), every regular
expression uses bounded repetition or a single unambiguous loop (no nested
quantifiers, so no catastrophic backtracking), and the grammar works on a
token list with fixed-size look-ahead tables.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

LOG = logging.getLogger(__name__)

#: Characters of the input that are read at all (the rest is ignored, with a note).
MAX_INPUT_CHARS = 10_000
#: Characters of the cleaned text that are parsed (the rest is ignored, with a note).
MAX_COMMAND_CHARS = 1_000
#: Commands kept from one utterance ("A and then B and then ...").
MAX_COMMANDS = 10

STATUS_OK = "ok"
STATUS_NO_COMMAND = "no_command"
STATUS_UNSUPPORTED = "unsupported"

DEFAULT_ACTION = "find"

# --------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------

#: Spoken action phrase (token tuple) -> canonical action.  Longest match wins.
ACTIONS: dict[tuple[str, ...], str] = {
    ("pick", "up"): "pick up", ("pick",): "pick up", ("pickup",): "pick up", ("lift",): "pick up",
    ("lift", "up"): "pick up", ("grasp",): "pick up",
    ("grab",): "grab", ("take", "hold", "of"): "grab", ("hold",): "grab",
    ("take",): "take",
    ("get",): "get", ("go", "get"): "get", ("fetch",): "get", ("go", "fetch"): "get", ("retrieve",): "get",
    ("hand", "me"): "hand me", ("hand",): "hand me", ("pass", "me"): "hand me", ("pass",): "hand me",
    ("give", "me"): "give me", ("give",): "give me",
    ("bring", "me"): "bring me", ("bring",): "bring me",
    ("point", "at"): "point at", ("point", "to"): "point at", ("point", "towards"): "point at",
    ("point", "toward"): "point at", ("point",): "point at",
    ("find",): "find", ("locate",): "find", ("search", "for"): "find", ("look", "for"): "find",
    ("where", "is"): "find", ("where's",): "find", ("wheres",): "find", ("where", "are"): "find",
    ("where",): "find", ("detect",): "find", ("identify",): "find", ("spot",): "find", ("see",): "find",
    ("is", "there"): "find", ("are", "there"): "find", ("do", "you", "see"): "find",
    ("what", "is"): "find", ("what's",): "find", ("whats",): "find",
    ("look", "at"): "look at", ("focus", "on"): "look at",
    ("show", "me"): "show me", ("show",): "show me",
    ("touch",): "touch", ("tap",): "touch",
    ("push",): "push", ("nudge",): "push", ("shove",): "push",
    ("move", "to"): "move to", ("move", "towards"): "move to", ("move", "toward"): "move to",
    ("approach",): "move to",
    ("go", "to"): "go to", ("go", "over", "to"): "go to", ("go", "towards"): "go to", ("go", "toward"): "go to",
    ("drive", "to"): "go to", ("navigate", "to"): "go to", ("head", "to"): "go to",
    ("drop",): "drop", ("put", "down"): "drop", ("release",): "drop", ("let", "go", "of"): "drop",
}

#: Removed wherever they occur as whole words.
FILLER_WORDS = frozenset({
    "um", "umm", "ummm", "uhm", "uh", "uhh", "uhhh", "er", "err", "erm", "hmm", "hmmm", "hm", "mm", "mmm",
    "ah", "ahh", "eh", "please", "pls", "plz", "kindly", "just", "basically", "actually", "maybe",
})

#: Removed wherever they occur (token tuples, longest first).
FILLER_PHRASES: tuple[tuple[str, ...], ...] = tuple(sorted({
    ("you", "know"), ("i", "mean"), ("could", "you"), ("can", "you"), ("would", "you"), ("will", "you"),
    ("i", "want", "you", "to"), ("i'd", "like", "you", "to"), ("i", "would", "like", "you", "to"),
    ("i", "need", "you", "to"), ("go", "ahead", "and"), ("let's",), ("i", "want"), ("i", "need"),
    ("i'd", "like"), ("i", "would", "like"), ("i", "wanna"), ("do", "you", "mind"), ("would", "you", "mind"),
    ("be", "so", "kind", "as", "to"), ("if", "you", "can"), ("if", "you", "could"), ("i", "think"),
    ("i", "guess"), ("i", "suppose"),
}, key=lambda t: -len(t)))

#: Dropped at the start of a clause (repeatedly).
LEADING_MARKERS = frozenset({
    "so", "well", "okay", "ok", "okey", "alright", "now", "and", "also", "then", "hey", "hi", "hello", "yeah",
    "yes", "oh", "right", "next", "first", "firstly", "finally", "lastly",
})
#: Leading markers dropped only when a comma or an action follows ("first, pick up", not "first cup").
_GUARDED_MARKERS = frozenset({"right", "next", "first", "firstly", "finally", "lastly"})

#: Wake words (robot's name) removed at the start of a clause or between commas / at the end after a comma.
WAKE_WORDS = frozenset({"robot"})

#: Dropped at the end of a clause (token tuples, longest first).
TRAILING_PHRASES: tuple[tuple[str, ...], ...] = tuple(sorted({
    ("for", "me"), ("to", "me"), ("here",), ("over", "here"), ("over", "there"), ("there",), ("now",),
    ("right", "now"), ("thanks",), ("thank", "you"), ("okay",), ("ok",), ("for", "us"), ("to", "us"),
}, key=lambda t: -len(t)))

#: Whole utterances / clauses that speech-to-text produces on silence or that are only politeness.
HALLUCINATIONS = frozenset({
    "thank you", "thank you very much", "thanks", "thanks a lot", "thank you so much", "thanks for watching",
    "thank you for watching", "thanks for watching and see you next time",
    "thank you for watching and see you next time",
    "please subscribe", "subscribe", "like and subscribe", "you", "bye", "bye bye", "goodbye", "thank you bye",
    "see you", "see you next time", "the end", "i'm sorry", "sorry", "cheers",
    "subtitles by the amara org community", "transcription by castingwords", "music", "applause", "silence",
    # conversational single words: no object
    "yes", "no", "yeah", "yep", "nope", "sure", "okay", "ok", "alright", "hello", "hi", "hey", "what", "huh",
    "right", "good", "great", "cool", "nice", "done",
})

#: Control words: not an object to look for (reported as no_command so the caller can react to them).
CONTROL_PHRASES = frozenset({
    "stop", "cancel", "wait", "pause", "halt", "abort", "reset", "never mind", "nevermind", "hold on",
    "forget it", "forget about it", "stop it", "stop that", "that's all", "thats all", "nothing",
})

#: Determiners dropped from object phrases.
ARTICLES = frozenset({"the", "a", "an", "that", "this", "my", "these", "those", "your", "our", "some", "any"})

#: Copulas / participles dropped from object phrases ("the cup that is sitting on the left").
_NOISE_IN_OBJECT = frozenset({
    "is", "are", "which", "who", "that's", "thats", "sitting", "lying", "located", "placed", "standing",
    "resting", "positioned", "being", "colored", "coloured", "color", "colour", "very", "really",
})

#: Colour words -> canonical basic colour term (same names as ``colors.COLOR_NAMES``).
COLOR_WORDS: dict[str, str] = {
    **{c: c for c in ("red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white",
                      "grey")},
    "gray": "grey", "violet": "purple", "magenta": "purple", "crimson": "red", "maroon": "red", "scarlet": "red",
    "cyan": "blue", "navy": "blue", "turquoise": "blue", "teal": "blue", "silver": "grey", "golden": "yellow",
    "gold": "yellow", "reddish": "red", "greenish": "green", "bluish": "blue", "blueish": "blue",
    "yellowish": "yellow", "orangish": "orange", "purplish": "purple", "pinkish": "pink", "brownish": "brown",
    "blackish": "black", "whitish": "white", "greyish": "grey", "grayish": "grey",
}
#: Shade modifiers kept as attributes ("light blue" -> colours [blue], attributes [light]).
SHADE_WORDS = frozenset({"light", "dark", "pale", "bright", "deep"})
#: Material words -> canonical attribute.
MATERIAL_WORDS: dict[str, str] = {
    "wooden": "wooden", "wood": "wooden", "metal": "metal", "metallic": "metal", "steel": "metal",
    "plastic": "plastic", "glass": "glass", "paper": "paper", "ceramic": "ceramic", "cardboard": "cardboard",
    "rubber": "rubber", "fabric": "fabric", "cloth": "fabric",
}
#: Size words kept as attributes.
SIZE_WORDS = frozenset({"big", "large", "small", "little", "tiny", "tall", "short", "huge", "giant", "mini",
                        "medium", "long", "thin", "wide"})

#: Superlatives / position words -> spatial kind.
SUPERLATIVES: dict[str, str] = {
    "leftmost": "left", "rightmost": "right", "topmost": "top", "uppermost": "top", "highest": "top",
    "bottommost": "bottom", "lowermost": "bottom", "lowest": "bottom", "middlemost": "middle",
    "central": "middle", "nearest": "nearest", "closest": "nearest", "farthest": "farthest",
    "furthest": "farthest", "largest": "largest", "biggest": "largest", "smallest": "smallest",
    "tiniest": "smallest",
}
#: Direction words usable as "on the X" / "the X cup" -> spatial kind.
DIRECTIONS: dict[str, str] = {
    "left": "left", "right": "right", "top": "top", "bottom": "bottom", "middle": "middle", "center": "middle",
    "centre": "middle", "front": "nearest", "back": "farthest",
}
_DIR_TAIL = frozenset({"side", "hand", "corner", "edge", "end", "part", "half"})
_DIR_PREPS = frozenset({"on", "to", "at", "in", "from", "towards", "toward"})
_INTENSIFIERS = frozenset({"far", "very", "most"})
#: Words meaning the robot / the speaker ("the cup closest to me" -> nearest).
SELF_WORDS = frozenset({"me", "you", "us", "robot", "camera", "yourself", "myself"})
ORDINALS: dict[str, int] = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "6th": 6, "7th": 7, "8th": 8,
    "9th": 9, "10th": 10,
}
_OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top", "nearest": "farthest",
             "farthest": "nearest", "largest": "smallest", "smallest": "largest", "middle": "middle"}
SPATIAL_KINDS = ("left", "right", "top", "bottom", "middle", "nearest", "farthest", "largest", "smallest")

#: Relation phrase (token tuple, articles already dropped) -> canonical relation.
RELATIONS: dict[tuple[str, ...], str] = {}
for _side in ("left", "right"):
    for _pre in ((), ("to",), ("on",), ("at",)):
        for _mid in ((), ("side",), ("hand", "side")):
            RELATIONS[_pre + (_side,) + _mid + ("of",)] = f"{_side} of"
RELATIONS.update({
    ("next", "to"): "next to", ("beside",): "next to", ("besides",): "next to", ("alongside",): "next to",
    ("adjacent", "to"): "next to", ("by",): "next to",
    ("near",): "near", ("near", "to"): "near", ("close", "to"): "near", ("closest", "to"): "near",
    ("nearest", "to"): "near", ("nearby",): "near", ("closer", "to"): "near",
    ("on", "top", "of"): "on", ("on",): "on", ("onto",): "on", ("atop",): "on", ("upon",): "on",
    ("in",): "in", ("inside",): "in", ("inside", "of"): "in", ("within",): "in", ("into",): "in",
    ("in", "front", "of"): "in front of", ("infront", "of"): "in front of", ("front", "of"): "in front of",
    ("behind",): "behind", ("in", "back", "of"): "behind", ("at", "back", "of"): "behind",
    ("above",): "above", ("over",): "above",
    ("below",): "below", ("under",): "below", ("underneath",): "below", ("beneath",): "below",
})
#: Canonical relation values (``"in"`` is resolved like ``"on"`` by the ranking).
RELATION_KINDS = ("next to", "near", "left of", "right of", "on", "in", "in front of", "behind", "above", "below")

#: Pronouns / placeholders that name no object by themselves.
PRONOUNS = frozenset({"it", "them", "one", "ones", "something", "anything", "everything", "stuff", "thing",
                      "things", "object", "objects", "item", "items"})
_PLACEHOLDER_NOUNS = frozenset({"one", "ones", "thing", "things", "object", "objects", "item", "items"})

#: Common object nouns (English vocabulary check, not a closed list of what can be found).
OBJECT_NOUNS = frozenset("""
ball cup mug bottle can box block cube plate bowl glass jar lid pot pan kettle spoon fork knife chopsticks
laptop phone keyboard mouse remote book notebook pen pencil marker scissors stapler tape toy doll car truck
apple banana orange lemon lime pear peach plum grape strawberry tomato potato carrot onion cucumber pepper
bread sandwich cake donut pizza cookie snack chips cereal sponge towel cloth brush soap bucket basket bag
backpack shoe sock hat cap shirt jacket umbrella chair table desk shelf drawer cabinet door window wall floor
lamp light clock vase plant flower pillow blanket bed couch sofa tv monitor screen camera bin trash can
toothbrush hairdryer teddy bear bowl tray container packet package carton tin wrench hammer screwdriver
drill pliers clamp bolt nut screw tool cone cylinder sphere pyramid brick lego puzzle cards dice can
mustard ketchup sugar coffee tea milk juice water soda beer wine cola sauce salt jug pitcher thermos
tumbler flask sink fridge microwave oven toaster stove robot person hand object thing item stuff
headphones cable charger battery wallet keys key glasses sunglasses watch ring bracelet necklace
frisbee skateboard racket bat glove kite bicycle bike motorcycle bus train boat airplane bird cat dog
horse sheep cow elephant zebra giraffe bench sign hydrant suitcase tie skis snowboard broccoli hot dog
""".split())

#: English function/structure words (for the "recognisable English" check).
_ENGLISH_FUNCTION = frozenset("""
the a an that this my these those your our some any and or of to on in at from for with by near next
beside behind above below under over up down it them one is are there where what which who me you us
i we he she they can could would will should do does did please pick grab take get hand give bring point
find locate look show touch push move go left right top bottom middle center centre front back side
near nearest closest farthest furthest largest biggest smallest leftmost rightmost then after not no
yes ok okay hey hello hi so well now just like also here thanks thank first second third last
""".split())

#: Frequent function words / colour words of other languages written in Latin script.
FOREIGN_WORDS = frozenset("""
el la los las le les der die das den dem und ein eine einen il lo gli una uno por para bitte favor recoge
coge toma prends nimm rojo roja azul verde rouge bleu vert rot blau grün gelb amarillo naranja negro
negra blanco blanca noir noire blanc blanche schwarz weiß weiss de du des het een och und auf und mit
pelota balle ball taza tasse vaso botella bouteille flasche nehmen tome pegue pega agarra donde où wo
""".split()) - {"ball"}

_ENGLISH_VOCAB = frozenset(
    {w for key in ACTIONS for w in key}
    | FILLER_WORDS
    | {w for p in FILLER_PHRASES for w in p}
    | LEADING_MARKERS | WAKE_WORDS | {w for p in CONTROL_PHRASES for w in p.split()}
    | ARTICLES | _NOISE_IN_OBJECT | set(COLOR_WORDS) | SHADE_WORDS
    | set(MATERIAL_WORDS) | SIZE_WORDS | set(SUPERLATIVES) | set(DIRECTIONS) | SELF_WORDS | set(ORDINALS)
    | {w for key in RELATIONS for w in key} | PRONOUNS | OBJECT_NOUNS | _ENGLISH_FUNCTION
)

# --------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------

_ORDINAL_WORDS = {1: "1st", 2: "2nd", 3: "3rd"}


@dataclass
class SpatialQualifier:
    """A position constraint among candidates.

    Attributes:
        kind: one of :data:`SPATIAL_KINDS` (left, right, top, bottom, middle,
            nearest, farthest, largest, smallest).
        ordinal: 1-based rank in that order ("the second cup from the left" ->
            kind ``"left"``, ordinal 2).
    """

    kind: str
    ordinal: int = 1

    def to_dict(self) -> dict:
        return {"kind": self.kind, "ordinal": int(self.ordinal)}

    def __str__(self) -> str:
        if self.ordinal == 1:
            return {"left": "leftmost", "right": "rightmost", "top": "topmost", "bottom": "bottommost",
                    "middle": "in the middle"}.get(self.kind, self.kind)
        nth = _ORDINAL_WORDS.get(self.ordinal, f"{self.ordinal}th")
        if self.kind in ("left", "right", "top", "bottom"):
            return f"{nth} from the {self.kind}"
        return f"{nth} {self.kind}"


@dataclass
class ParsedCommand:
    """One command of an utterance.

    Attributes:
        raw: the clause of the cleaned utterance it came from (original case,
            artefacts removed), e.g. ``"pick up uh the red ball"``.
        action: canonical action (values of :data:`ACTIONS`), ``"find"`` when
            none was said.
        target: object phrase for CLIP: attributes + noun, articles, spatial
            words and the reference removed, e.g. ``"red ball"``; a bare
            placeholder ("the red one") becomes ``"red object"``.
        noun: head noun, e.g. ``"ball"`` (``"object"`` for "one"/"thing").
        colors: canonical colour terms named for the target (``colors.COLOR_NAMES``).
        attributes: material / size / shade words (``"wooden"``, ``"small"``, ``"light"``).
        spatial: position constraint among candidates, or ``None``.
        relation: relation to a reference object (:data:`RELATION_KINDS`), or ``None``.
        reference: reference object phrase (e.g. ``"red plate"``), or ``None``.
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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spatial"] = None if self.spatial is None else self.spatial.to_dict()
        return d

    def summary(self) -> str:
        """One line, e.g. ``pick up "red ball" (colours: red; leftmost) next to "red plate"``."""
        parts = []
        if self.colors:
            parts.append("colours: " + ", ".join(self.colors))
        if self.attributes:
            parts.append("attributes: " + ", ".join(self.attributes))
        if self.spatial is not None:
            parts.append(str(self.spatial))
        text = f'{self.action} "{self.target}"'
        if parts:
            text += " (" + "; ".join(parts) + ")"
        if self.relation and self.reference:
            text += f' {self.relation} "{self.reference}"'
        return text

    __str__ = summary


@dataclass
class CommandParse:
    """Result of :func:`parse_command`.

    Attributes:
        status: ``"ok"``, ``"no_command"`` or ``"unsupported"``.
        reason: why there is no command / why unsupported, plus notes (e.g.
            input truncated); empty when there is nothing to say.
        commands: parsed commands in spoken order (empty unless status is ``"ok"``).
    """

    status: str
    reason: str = ""
    commands: list = field(default_factory=list)

    @property
    def first(self) -> Optional[ParsedCommand]:
        """The first command, or ``None``."""
        return self.commands[0] if self.commands else None

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK and bool(self.commands)

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "commands": [c.to_dict() for c in self.commands]}

    def summary(self) -> str:
        if self.status != STATUS_OK:
            return f"{self.status}: {self.reason}" if self.reason else self.status
        text = "; then ".join(c.summary() for c in self.commands)
        return text + (f" [{self.reason}]" if self.reason else "")

    __str__ = summary


# --------------------------------------------------------------------------------------
# Cleaning
# --------------------------------------------------------------------------------------

_NONSPEECH = ("inaudible", "unintelligible", "music", "silence", "cough", "laugh", "noise", "applause", "sigh",
              "breath", "static", "crosstalk", "blank", "clears throat", "sneez", "background", "no speech",
              "indistinct", "chuckl", "mumbl", "typing", "beep", "click")
# All patterns use bounded repetition of a negated class: O(n * bound), no backtracking blow-up.
_RE_SQUARE = re.compile(r"\[[^\[\]]{0,80}\]")
_RE_PAREN = re.compile(r"\(([^()]{0,80})\)")
_RE_STAR = re.compile(r"\*[^*]{1,40}\*")
_RE_ANGLE = re.compile(r"<[^<>]{0,40}>")
_RE_NOTES = re.compile(r"[♪♫][^♪♫]{0,200}[♪♫]")
_RE_WS = re.compile(r"\s+")
# A word: letters/digits, optionally joined by single apostrophes or hyphens; or one punctuation mark.
_RE_TOKEN = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*|[,.!?;:]")
_PUNCT = frozenset(",.!?;:")
_CLAUSE_END = frozenset(".!?;:")
_TRANSLATE = {ord("’"): "'", ord("‘"): "'", ord("ʼ"): "'", ord("`"): "'", ord("–"): " ", ord("—"): " ",
              ord("…"): ".", ord("_"): " "}


def _paren_sub(m: "re.Match[str]") -> str:
    inner = m.group(1).lower()
    return " " if any(w in inner for w in _NONSPEECH) else f" {m.group(1)} "


def _strip_controls(text: str) -> str:
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] == "C":
            out.append(" " if cat in ("Cc", "Cn") else "")
        elif cat in ("Zl", "Zp"):
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def clean_text(text: Any) -> tuple[str, list[str]]:
    """Normalise speech-to-text output: the first step of :func:`parse_command`.

    Reads at most :data:`MAX_INPUT_CHARS` characters, removes control/format
    characters, NFKC-normalises, removes non-speech tags, collapses whitespace
    and keeps at most :data:`MAX_COMMAND_CHARS` characters.  Case is kept.

    Returns:
        (cleaned text, notes) -- notes say which caps applied.
    """
    notes: list[str] = []
    if text is None:
        return "", notes
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text[: 4 * MAX_INPUT_CHARS]).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    if len(text) > MAX_INPUT_CHARS:
        notes.append(f"input of {len(text)} characters: only the first {MAX_INPUT_CHARS} were read")
        text = text[:MAX_INPUT_CHARS]
    text = _strip_controls(text)
    text = unicodedata.normalize("NFKC", text)
    text = _strip_controls(text)  # NFKC never adds controls in practice; cheap insurance
    text = text.translate(_TRANSLATE)
    text = _RE_SQUARE.sub(" ", text)
    text = _RE_ANGLE.sub(" ", text)
    text = _RE_NOTES.sub(" ", text)
    text = _RE_STAR.sub(" ", text)
    text = _RE_PAREN.sub(_paren_sub, text)
    text = text.replace("♪", " ").replace("♫", " ")
    text = _RE_WS.sub(" ", text).strip()
    if len(text) > MAX_COMMAND_CHARS:
        notes.append(f"cleaned text of {len(text)} characters: only the first {MAX_COMMAND_CHARS} were parsed")
        cut = text[:MAX_COMMAND_CHARS]
        space = cut.rfind(" ")
        text = cut[:space] if space > MAX_COMMAND_CHARS // 2 else cut
    return text, notes


def _script_of(ch: str) -> str:
    if ch < "\u0080":
        return "LATIN"
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def _non_latin_scripts(text: str) -> tuple[int, int, list[str]]:
    """(letters, non-Latin letters, most frequent non-Latin script names)."""
    letters = 0
    counts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha():
            letters += 1
            script = _script_of(ch)
            if script != "LATIN":
                counts[script] = counts.get(script, 0) + 1
    names = sorted(counts, key=lambda k: -counts[k])
    return letters, sum(counts.values()), names[:3]


def _is_latin_word(tok: str) -> bool:
    return all(not ch.isalpha() or _script_of(ch) == "LATIN" for ch in tok)


# --------------------------------------------------------------------------------------
# Token helpers
# --------------------------------------------------------------------------------------

_HYPHEN_JOIN = frozenset({"leftmost", "rightmost", "topmost", "uppermost", "bottommost", "lowermost",
                          "middlemost", "pickup", "infront"})


@dataclass
class _Tok:
    low: str  # case-folded word or punctuation mark
    start: int  # span in the cleaned text
    end: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    for m in _RE_TOKEN.finditer(text):
        low = m.group(0).casefold()
        if "-" in low:
            joined = low.replace("-", "")
            parts = [p for p in low.split("-") if p]
            if joined in _HYPHEN_JOIN or joined in SUPERLATIVES:
                toks.append(_Tok(joined, m.start(), m.end()))
                continue
            if all(p in _ENGLISH_VOCAB for p in parts):
                for p in parts:
                    toks.append(_Tok(p, m.start(), m.end()))
                continue
        toks.append(_Tok(low, m.start(), m.end()))
    return toks


# Index the tables by first word so that matching is O(entries for that word).
def _index(table) -> dict[str, list]:
    idx: dict[str, list] = {}
    for key in (table.keys() if isinstance(table, dict) else table):
        idx.setdefault(key[0], []).append(key)
    return idx


_ACTION_IDX = _index(ACTIONS)
_FILLER_IDX = _index(FILLER_PHRASES)
_RELATION_IDX = _index(RELATIONS)


def _match_indexed(words: list[str], i: int, idx: dict, table=None) -> tuple[int, Any]:
    if i >= len(words):
        return 0, None
    best_len, best_val = 0, None
    for key in idx.get(words[i], ()):
        n = len(key)
        if n > best_len and tuple(words[i:i + n]) == key:
            best_len = n
            best_val = table[key] if table is not None else key
    return best_len, best_val


def _remove_fillers(toks: list[_Tok]) -> list[_Tok]:
    words = [t.low for t in toks]
    keep: list[_Tok] = []
    i = 0
    n = len(words)
    while i < n:
        ln, _ = _match_indexed(words, i, _FILLER_IDX)
        if ln:
            i += ln
            continue
        w = words[i]
        if w in FILLER_WORDS:
            i += 1
            continue
        if w == "like":
            prev = keep[-1].low if keep else None
            nxt = words[i + 1] if i + 1 < n else None
            if prev is None or prev in _PUNCT or nxt is None or nxt in _PUNCT or nxt in ARTICLES:
                i += 1
                continue
        if w in WAKE_WORDS:
            prev = keep[-1].low if keep else None
            nxt = words[i + 1] if i + 1 < n else None
            if prev == "," and (nxt is None or nxt in _PUNCT):
                i += 1
                continue
        keep.append(toks[i])
        i += 1
    return keep


def _starts_action(words: list[str], i: int) -> bool:
    return _match_indexed(words, i, _ACTION_IDX)[0] > 0


def _split_clauses(toks: list[_Tok]) -> list[list[_Tok]]:
    """Split at sentence ends, "and then", "then", "after that", and "and"/"," + verb ("and" + article)."""
    words = [t.low for t in toks]
    clauses: list[list[_Tok]] = []
    cur: list[_Tok] = []
    i, n = 0, len(words)

    def flush():
        nonlocal cur
        if cur:
            clauses.append(cur)
        cur = []

    while i < n:
        w = words[i]
        nxt = words[i + 1] if i + 1 < n else None
        if w in _CLAUSE_END:
            flush()
            i += 1
            continue
        if w == "and" and nxt == "then":
            flush()
            i += 2
            continue
        if w == "then" or w == "afterwards" or w == "afterward":
            flush()
            i += 1
            continue
        if w in ("after", "and") and words[i:i + 2] == ["after", "that"]:
            flush()
            i += 2
            continue
        if w == "and" and words[i + 1:i + 3] == ["after", "that"]:
            flush()
            i += 3
            continue
        if w == "and" and nxt is not None and (nxt in ARTICLES or _starts_action(words, i + 1)) and cur:
            flush()
            i += 1
            continue
        if w == "," and nxt is not None and _starts_action(words, i + 1) and cur:
            flush()
            i += 1
            continue
        cur.append(toks[i])
        i += 1
    flush()
    return clauses


def _strip_leading(words: list[str]) -> list[str]:
    i = 0
    n = len(words)
    while i < n:
        w = words[i]
        if w in _PUNCT:
            i += 1
        elif w in WAKE_WORDS:
            i += 1
        elif w in LEADING_MARKERS:
            nxt = words[i + 1] if i + 1 < n else None
            if w in _GUARDED_MARKERS and not (nxt == "," or (nxt is not None and _starts_action(words, i + 1))
                                               or nxt is None):
                break
            i += 1
        else:
            break
    return words[i:]


def _strip_trailing(words: list[str]) -> list[str]:
    changed = True
    while changed and words:
        changed = False
        while words and words[-1] in _PUNCT:
            words = words[:-1]
            changed = True
        if len(words) >= 2 and words[-1] in WAKE_WORDS and words[-2] == ",":
            words = words[:-2]
            changed = True
            continue
        for key in TRAILING_PHRASES:
            n = len(key)
            if len(words) > n and tuple(words[-n:]) == key:
                words = words[:-n]
                changed = True
                break
    return words


# --------------------------------------------------------------------------------------
# Object phrase
# --------------------------------------------------------------------------------------


@dataclass
class _ObjectParse:
    target: str = ""
    noun: str = ""
    colors: list = field(default_factory=list)
    attributes: list = field(default_factory=list)
    spatial: Optional[SpatialQualifier] = None
    relation: Optional[str] = None
    reference: Optional[str] = None


def _extract_spatial(words: list[str]) -> tuple[list[str], Optional[str], Optional[int], bool, list[str]]:
    """Remove spatial words; return (rest, kind, ordinal, last, notes)."""
    kind: Optional[str] = None
    ordinal: Optional[int] = None
    last = False
    notes: list[str] = []
    out: list[str] = []
    i, n = 0, len(words)

    def set_kind(k: str):
        nonlocal kind
        if kind is None:
            kind = k
        elif kind != k:
            notes.append(f"spatial qualifier '{k}' ignored (already '{kind}')")

    while i < n:
        w = words[i]
        nxt = words[i + 1] if i + 1 < n else None
        # "closest to me" / "farthest from you": the robot's own position
        if w in SUPERLATIVES and nxt in ("to", "from"):
            after = words[i + 2] if i + 2 < n else None
            if after in SELF_WORDS:
                set_kind(SUPERLATIVES[w])
                i += 3
                continue
            if SUPERLATIVES[w] == "nearest":  # "closest to the plate": a relation, resolved later
                out.append(w)
                i += 1
                continue
        if w in SUPERLATIVES:
            set_kind(SUPERLATIVES[w])
            i += 1
            continue
        if w in ORDINALS:
            if ordinal is None:
                ordinal = ORDINALS[w]
            i += 1
            continue
        if w == "last" and (nxt is None or nxt not in ("of",)):
            last = True
            i += 1
            continue
        # "on the left (side)", "from the right", "in the middle", "at the top", "in front" (no "of"),
        # "the far left cup", "the left one"; but not "left of ..." (a relation, resolved later).
        is_prep = w in _DIR_PREPS
        j = i + 1 if is_prep else i
        while j < n and words[j] in _INTENSIFIERS:
            j += 1
        if j < n and words[j] in DIRECTIONS and (is_prep or words[j] not in ("front", "back")):
            d = words[j]
            k = j + 1
            second = None
            if k < n and words[k] in DIRECTIONS and words[k] not in ("front", "back"):
                second = words[k]  # "top left corner": the first direction wins
                k += 1
            while k < n and words[k] in _DIR_TAIL:
                k += 1
            if not (k < n and words[k] == "of"):
                set_kind(DIRECTIONS[d])
                if second is not None:
                    set_kind(DIRECTIONS[second])
                i = k
                continue
        out.append(w)
        i += 1
    return out, kind, ordinal, last, notes


def _find_relation(words: list[str]) -> tuple[list[str], Optional[str], list[str]]:
    """First relation phrase with a non-empty head and tail: (head, relation, tail)."""
    for i in range(1, len(words)):
        ln, rel = _match_indexed(words, i, _RELATION_IDX, RELATIONS)
        if ln and i + ln < len(words):
            return words[:i], rel, words[i + ln:]
    return words, None, []


def _attributes(words: list[str]) -> tuple[str, str, list[str], list[str]]:
    """Head words -> (target, noun, colours, attributes).

    The noun is the last word that is not an attribute, before any "of"
    ("cup of coffee" -> cup); attributes after it move in front of it ("ball
    that is red" -> "red ball").  A lone "orange" or material word is the noun
    ("the orange", "the glass"); attributes without a noun get ``"object"``
    ("the red one", "the red" -> "red object").  Colours and attributes are
    taken before "of" only ("bottle of orange juice" has no colour).
    """
    words = [w for w in words if w not in _PUNCT]
    if any(w not in _PLACEHOLDER_NOUNS and w != "and" and not (w in COLOR_WORDS or w in SHADE_WORDS or
                                                              w in MATERIAL_WORDS or w in SIZE_WORDS)
           for w in words):
        words = [w for w in words if w not in _PLACEHOLDER_NOUNS] or words  # "the red ball, the one ..."
    of_at = words.index("of") if "of" in words[1:] else len(words)
    head, tail = words[:of_at], words[of_at:]

    def is_attr(w: str) -> bool:
        return w in COLOR_WORDS or w in SHADE_WORDS or w in MATERIAL_WORDS or w in SIZE_WORDS

    noun_idx = None
    for k in range(len(head) - 1, -1, -1):
        if not is_attr(head[k]) and head[k] != "and":
            noun_idx = k
            break
    if noun_idx is None and len(head) == 1 and (head[0] == "orange" or head[0] in MATERIAL_WORDS):
        noun_idx = 0
    colors: list[str] = []
    attrs: list[str] = []
    for k, w in enumerate(head):
        if k == noun_idx:
            continue
        if w in COLOR_WORDS:
            if COLOR_WORDS[w] not in colors:
                colors.append(COLOR_WORDS[w])
        elif w in MATERIAL_WORDS:
            if MATERIAL_WORDS[w] not in attrs:
                attrs.append(MATERIAL_WORDS[w])
        elif (w in SIZE_WORDS or w in SHADE_WORDS) and w not in attrs:
            attrs.append(w)
    if noun_idx is None:
        noun = "object"
        out_words = head + ["object"] + tail
    else:
        noun = head[noun_idx]
        after = head[noun_idx + 1:]
        if after:  # post-nominal attributes ("ball that is red") move in front of the noun
            head = head[:noun_idx] + [w for w in after if w != "and"] + [noun]
        out_words = head + tail
        if noun in _PLACEHOLDER_NOUNS:
            noun = "objects" if noun.endswith("s") else "object"
            out_words = [("objects" if w.endswith("s") else "object") if w in _PLACEHOLDER_NOUNS else w
                         for w in out_words]
    return " ".join(out_words), noun, colors, attrs


def _parse_object_words(words: list[str]) -> tuple[_ObjectParse, list[str]]:
    notes: list[str] = []
    words = [w for w in words if w not in _PUNCT and w not in ARTICLES and w not in _NOISE_IN_OBJECT]
    words = _strip_trailing(words)
    rest, kind, ordinal, last, sp_notes = _extract_spatial(words)
    notes.extend(sp_notes)
    head, relation, tail = _find_relation(rest)
    ref_text = None
    if relation is not None:
        tail_words = [w for w in tail if w not in _PUNCT]
        if tail_words and all(w in SELF_WORDS for w in tail_words):
            # "near me", "in front of you": the robot is the reference
            self_kind = {"near": "nearest", "next to": "nearest", "in front of": "nearest",
                         "behind": "farthest"}.get(relation)
            if self_kind and kind is None:
                kind = self_kind
            relation = None
        else:
            ref_text = " ".join(tail_words)
    else:
        head = rest
    # Pronouns alone name nothing ("pick it up"), unless a position / attribute picks one.
    content = [w for w in head if w not in ("it", "them", "something", "anything", "everything", "stuff")]
    if not content and (kind is not None or ordinal is not None or last or relation is not None):
        content = ["object"]
    if not content:
        return _ObjectParse(), notes
    target, noun, colors, attrs = _attributes(content)
    if ordinal is not None and kind is None:
        kind = "left"  # "the second cup": reading order
    if last:
        if kind is None:
            kind = "right"
        else:
            kind = _OPPOSITE.get(kind, kind)
    spatial = SpatialQualifier(kind, ordinal or 1) if kind is not None else None
    return _ObjectParse(target, noun, colors, attrs, spatial, relation, ref_text), notes


def parse_object_phrase(phrase: str) -> ParsedCommand:
    """Parse an object phrase without an action ("the red plate") into a :class:`ParsedCommand`.

    Used by the ranking for reference phrases.  ``action`` is ``"find"``; an
    empty phrase gives ``target == ""``.  Never raises.
    """
    try:
        text, _ = clean_text(phrase)
        words = [t.low for t in _remove_fillers(_tokenize(text))]
        obj, _ = _parse_object_words(words)
    except Exception:  # pragma: no cover - defensive, see parse_command
        LOG.exception("parse_object_phrase failed on %r", str(phrase)[:200])
        obj = _ObjectParse()
    return ParsedCommand(raw=str(phrase)[:MAX_COMMAND_CHARS], action=DEFAULT_ACTION, target=obj.target,
                         noun=obj.noun, colors=obj.colors, attributes=obj.attributes, spatial=obj.spatial,
                         relation=obj.relation, reference=obj.reference)


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def _join_reason(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def parse_command(text: Any) -> CommandParse:
    """Parse a spoken-style command into an ordered list of :class:`ParsedCommand`.

    Args:
        text: the utterance (``str``; ``None``/bytes/other objects are accepted
            and converted).  Any length: only the first :data:`MAX_INPUT_CHARS`
            characters are read and :data:`MAX_COMMAND_CHARS` cleaned
            characters parsed.

    Returns:
        :class:`CommandParse` with status ``"ok"`` (commands non-empty),
        ``"no_command"`` (nothing to do: keep the current target) or
        ``"unsupported"`` (not English; ``reason`` says why).

    Never raises: an unexpected internal error is logged and reported as
    ``no_command`` with reason ``"internal error: ..."``.
    """
    try:
        return _parse(text)
    except Exception as exc:  # pragma: no cover - the fuzz tests check this path is never taken
        LOG.exception("parse_command failed")
        return CommandParse(STATUS_NO_COMMAND, f"internal error: {type(exc).__name__}")


def _parse(text: Any) -> CommandParse:
    cleaned, notes = clean_text(text)
    note = "; ".join(notes)
    if not any(ch.isalnum() for ch in cleaned):
        if cleaned:
            why = "no words (only punctuation or symbols)"
        elif isinstance(text, str) and text.strip():
            why = "only speech-to-text artefacts (non-speech tags) or control characters"
        else:
            why = "empty input"
        return CommandParse(STATUS_NO_COMMAND, _join_reason(why, note))

    letters, non_latin, scripts = _non_latin_scripts(cleaned)
    if letters and non_latin * 2 > letters:
        return CommandParse(
            STATUS_UNSUPPORTED,
            _join_reason(f"non-English text ({', '.join(s.lower() for s in scripts)} script): the CLIP text "
                         f"encoder only understands English", note))

    toks = _tokenize(cleaned)
    dropped = [t.low for t in toks if not _is_latin_word(t.low)]
    if dropped:
        toks = [t for t in toks if _is_latin_word(t.low)]
        notes.append(f"ignored {len(dropped)} non-English word(s)")
    words_all = [t.low for t in toks if t.low not in _PUNCT]
    if not words_all:
        return CommandParse(STATUS_NO_COMMAND, _join_reason("no words", "; ".join(notes)))

    if not any(ch.isalpha() for w in words_all for ch in w):
        return CommandParse(STATUS_NO_COMMAND, _join_reason("no words (only numbers)", "; ".join(notes)))
    utterance = " ".join(words_all)
    if utterance in CONTROL_PHRASES:
        return CommandParse(STATUS_NO_COMMAND, _join_reason(
            f"'{utterance}' is a control word, not an object to look for", "; ".join(notes)))
    if utterance in HALLUCINATIONS:
        return CommandParse(STATUS_NO_COMMAND, _join_reason(
            f"'{utterance}' alone is not a command (typical speech-to-text output on silence, politeness or a reply)",
            "; ".join(notes)))

    known = sum(1 for w in words_all if w in _ENGLISH_VOCAB)
    foreign = sum(1 for w in words_all if w in FOREIGN_WORDS)
    accented = any(not w.isascii() for w in words_all)
    if known == 0 and (foreign or accented or len(words_all) >= 4):
        return CommandParse(STATUS_UNSUPPORTED, _join_reason(
            "no recognisable English words: the CLIP text encoder only understands English", "; ".join(notes)))
    if foreign >= 2 and foreign > known:
        return CommandParse(STATUS_UNSUPPORTED, _join_reason(
            "mostly non-English words: the CLIP text encoder only understands English", "; ".join(notes)))

    toks = _remove_fillers(toks)
    commands: list[ParsedCommand] = []
    prev_action: Optional[str] = None
    dropped_clauses = 0
    for clause in _split_clauses(toks):
        if len(commands) >= MAX_COMMANDS:
            dropped_clauses += 1
            continue
        words = _strip_leading([t.low for t in clause])
        words = _strip_trailing(words)
        plain = " ".join(w for w in words if w not in _PUNCT)
        if not plain or plain in HALLUCINATIONS or plain in CONTROL_PHRASES:
            continue
        ln, action = _match_indexed(words, 0, _ACTION_IDX, ACTIONS)
        obj_words = words[ln:]
        if action is None:
            action = prev_action or DEFAULT_ACTION
        else:
            while obj_words and obj_words[0] in ("me", "us", ","):
                obj_words = obj_words[1:]
            if action == "pick up" and obj_words and obj_words[-1] == "up":
                obj_words = obj_words[:-1]  # "pick the cup up"
        obj, obj_notes = _parse_object_words(obj_words)
        notes.extend(obj_notes)
        prev_action = action
        if not obj.target:
            continue
        raw = cleaned[clause[0].start:clause[-1].end]
        commands.append(ParsedCommand(raw=raw, action=action, target=obj.target, noun=obj.noun,
                                      colors=obj.colors, attributes=obj.attributes, spatial=obj.spatial,
                                      relation=obj.relation, reference=obj.reference))
    if dropped_clauses:
        notes.append(f"only the first {MAX_COMMANDS} commands were kept ({dropped_clauses} more ignored)")
    if not commands:
        return CommandParse(STATUS_NO_COMMAND, _join_reason(
            "no object named (only filler words, politeness, or a pronoun such as 'it')", "; ".join(notes)))
    return CommandParse(STATUS_OK, "; ".join(notes), commands)
