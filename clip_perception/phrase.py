"""Object phrases: "the second red cup from the left next to the blue plate" -> parts.

:func:`parse_object_words` takes the words of one object phrase (fillers already removed) and
returns an :class:`ObjectParse`: the CLIP target phrase ("red cup"), head noun, canonical colours,
material / size / shade attributes, a spatial qualifier (kind + ordinal), a location qualifier
("on the top shelf": a support surface named with a position, kept out of the noun) and a
reference object with its relation ("next to" "blue plate").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .lexicon import (ARTICLES, COLOR_WORDS, DIR_PREPS, DIR_TAIL, DIRECTIONS, INTENSIFIERS, LOCATION_NOUNS,
                      MATERIAL_WORDS, NOISE_IN_OBJECT, OPPOSITE, ORDINALS, PLACEHOLDER_NOUNS, RELATIONS, SELF_WORDS,
                      SHADE_WORDS, SIZE_WORDS, SUPERLATIVES)
from .utterance import PUNCT, RELATION_IDX, match_indexed, strip_trailing

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
class ObjectParse:
    """Parts of one object phrase (see :class:`command.ParsedCommand` for the fields)."""

    target: str = ""
    noun: str = ""
    colors: list = field(default_factory=list)
    attributes: list = field(default_factory=list)
    spatial: Optional[SpatialQualifier] = None
    relation: Optional[str] = None
    reference: Optional[str] = None
    location: Optional[str] = None


#: Prepositions that introduce a location qualifier ("on the top shelf", "from the bottom drawer").
_LOCATION_PREPS = frozenset({"on", "in", "at", "from", "inside", "off"})
_LOCATION_MODIFIERS = frozenset(DIRECTIONS) | frozenset(ORDINALS) | frozenset(SUPERLATIVES) | INTENSIFIERS | {"last"}


def extract_location(words: list[str]) -> tuple[list[str], Optional[str], Optional[str]]:
    """Remove a location qualifier: a preposition, one or more position words and a support noun
    (:data:`lexicon.LOCATION_NOUNS`), optionally "of" + one word ("on the top shelf of the cabinet").

    Args:
        words: object phrase words, articles already dropped.

    Returns:
        (remaining words, location text such as ``"top shelf"`` or ``None``, spatial kind of its
        position word or ``None``).  A location without a position word ("on the shelf") is left
        alone: it is a relation to a reference object, as before.
    """
    n = len(words)
    for i in range(1, n - 2):
        if words[i] not in _LOCATION_PREPS:
            continue
        k = i + 1
        while k < n and words[k] in _LOCATION_MODIFIERS:
            k += 1
        if k == i + 1 or k >= n or words[k] not in LOCATION_NOUNS:
            continue
        end = k + 1
        if end + 1 < n and words[end] == "of":
            end += 2
        kind = None
        for w in words[i + 1:k]:
            kind = kind or DIRECTIONS.get(w) or SUPERLATIVES.get(w)
        return words[:i] + words[end:], " ".join(words[i + 1:end]), kind
    return words, None, None



def extract_spatial(words: list[str]) -> tuple[list[str], Optional[str], Optional[int], bool, list[str]]:
    """Remove spatial words ("on the left", "second", "nearest", "bigger"); return (rest, kind, ordinal, last,
    notes)."""
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
        is_prep = w in DIR_PREPS
        j = i + 1 if is_prep else i
        while j < n and words[j] in INTENSIFIERS:
            j += 1
        if j < n and words[j] in DIRECTIONS and (is_prep or words[j] not in ("front", "back")):
            d = words[j]
            k = j + 1
            second = None
            if k < n and words[k] in DIRECTIONS and words[k] not in ("front", "back"):
                second = words[k]  # "top left corner": the first direction wins
                k += 1
            while k < n and words[k] in DIR_TAIL:
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


def find_relation(words: list[str]) -> tuple[list[str], Optional[str], list[str]]:
    """First relation phrase with a non-empty head and tail: (head, relation, tail)."""
    for i in range(1, len(words)):
        ln, rel = match_indexed(words, i, RELATION_IDX, RELATIONS)
        if ln and i + ln < len(words):
            return words[:i], rel, words[i + ln:]
    return words, None, []


def attributes_of(words: list[str]) -> tuple[str, str, list[str], list[str]]:
    """Head words -> (target, noun, colours, attributes).

    The noun is the last word that is not an attribute, before any "of"
    ("cup of coffee" -> cup); attributes after it move in front of it ("ball
    that is red" -> "red ball").  A lone "orange" or material word is the noun
    ("the orange", "the glass"); attributes without a noun get ``"object"``
    ("the red one", "the red" -> "red object").  Colours and attributes are
    taken before "of" only ("bottle of orange juice" has no colour).
    """
    words = [w for w in words if w not in PUNCT]
    if any(w not in PLACEHOLDER_NOUNS and w != "and" and not (w in COLOR_WORDS or w in SHADE_WORDS or
                                                              w in MATERIAL_WORDS or w in SIZE_WORDS)
           for w in words):
        words = [w for w in words if w not in PLACEHOLDER_NOUNS] or words  # "the red ball, the one ..."
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
        if noun in PLACEHOLDER_NOUNS:
            noun = "objects" if noun.endswith("s") else "object"
            out_words = [("objects" if w.endswith("s") else "object") if w in PLACEHOLDER_NOUNS else w
                         for w in out_words]
    return " ".join(out_words), noun, colors, attrs


def parse_object_words(words: list[str]) -> tuple[ObjectParse, list[str]]:
    """Parse the words of one object phrase (fillers removed, no action verb).

    Returns:
        (:class:`ObjectParse`, notes); ``target == ""`` when the phrase names nothing (empty,
        a pronoun such as "it").
    """
    notes: list[str] = []
    words = [w for w in words if w not in PUNCT and w not in ARTICLES and w not in NOISE_IN_OBJECT]
    words = strip_trailing(words)
    words, location, location_kind = extract_location(words)
    rest, kind, ordinal, last, sp_notes = extract_spatial(words)
    notes.extend(sp_notes)
    head, relation, tail = find_relation(rest)
    ref_text = None
    if relation is not None:
        tail_words = [w for w in tail if w not in PUNCT]
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
        return ObjectParse(), notes
    target, noun, colors, attrs = attributes_of(content)
    if ordinal is not None and kind is None:
        kind = "left"  # "the second cup": reading order
    if kind is None and location_kind is not None:
        kind = location_kind  # "the box on the top shelf": the topmost box, to a first approximation
    if last:
        if kind is None:
            kind = "right"
        else:
            kind = OPPOSITE.get(kind, kind)
    spatial = SpatialQualifier(kind, ordinal or 1) if kind is not None else None
    return ObjectParse(target, noun, colors, attrs, spatial, relation, ref_text, location), notes


