"""Speech-to-text clean-up and tokens: the first steps of :func:`command.parse_command`.

* :func:`clean_text`: NFKC, control/format characters, non-speech tags (``[BLANK_AUDIO]``,
  ``(inaudible)``, ``*cough*``, ``<|endoftext|>``, ``♪ ... ♪``), whitespace; the input caps
  (:data:`lexicon.MAX_INPUT_CHARS` read, :data:`lexicon.MAX_COMMAND_CHARS` kept).
* :func:`tokenize`: words (apostrophes / hyphens inside) and punctuation marks, with spans.
* :func:`remove_fillers`: filler words and phrases ("um", "you know", "kind of", "like" as a
  filler), wake words after a comma, and stutters ("the the", "red, red" -> one word).
* :func:`split_clauses`: "A and then B", ", then", "after that", sentence ends, "and" + a verb.

Every regular expression uses bounded repetition of a negated class (no nested quantifiers), so
cleaning is linear in the (capped) input.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Optional

from .lexicon import (ACTIONS, ARTICLES, ENGLISH_VOCAB, FILLER_PHRASES, FILLER_WORDS, GUARDED_MARKERS,
                      LEADING_MARKERS, MAX_COMMAND_CHARS, MAX_INPUT_CHARS, PLACE_VERBS, RELATIONS, SUPERLATIVES,
                      TRAILING_PHRASES, WAKE_WORDS)

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
PUNCT = frozenset(",.!?;:")
CLAUSE_END = frozenset(".!?;:")
_TRANSLATE = {ord("’"): "'", ord("‘"): "'", ord("ʼ"): "'", ord("`"): "'", ord("–"): " ", ord("—"): " ",
              ord("…"): ".", ord("_"): " "}


def _paren_sub(m: "re.Match[str]") -> str:
    inner = m.group(1).lower()
    return " " if any(w in inner for w in _NONSPEECH) else f" {m.group(1)} "


def strip_controls(text: str) -> str:
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
    text = strip_controls(text)
    text = unicodedata.normalize("NFKC", text)
    text = strip_controls(text)  # NFKC never adds controls in practice; cheap insurance
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


def non_latin_scripts(text: str) -> tuple[int, int, list[str]]:
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


def is_latin_word(tok: str) -> bool:
    return all(not ch.isalpha() or _script_of(ch) == "LATIN" for ch in tok)


# --------------------------------------------------------------------------------------
# Token helpers
# --------------------------------------------------------------------------------------

_HYPHEN_JOIN = frozenset({"leftmost", "rightmost", "topmost", "uppermost", "bottommost", "lowermost",
                          "middlemost", "pickup", "infront"})


@dataclass
class Tok:
    low: str  # case-folded word or punctuation mark
    start: int  # span in the cleaned text
    end: int


def tokenize(text: str) -> list[Tok]:
    toks: list[Tok] = []
    for m in _RE_TOKEN.finditer(text):
        low = m.group(0).casefold()
        if "-" in low:
            joined = low.replace("-", "")
            parts = [p for p in low.split("-") if p]
            if joined in _HYPHEN_JOIN or joined in SUPERLATIVES:
                toks.append(Tok(joined, m.start(), m.end()))
                continue
            if all(p in ENGLISH_VOCAB for p in parts):
                for p in parts:
                    toks.append(Tok(p, m.start(), m.end()))
                continue
        toks.append(Tok(low, m.start(), m.end()))
    return toks


# Index the tables by first word so that matching is O(entries for that word).
def index_table(table) -> dict[str, list]:
    idx: dict[str, list] = {}
    for key in (table.keys() if isinstance(table, dict) else table):
        idx.setdefault(key[0], []).append(key)
    return idx


ACTION_IDX = index_table(ACTIONS)
FILLER_IDX = index_table(FILLER_PHRASES)
RELATION_IDX = index_table(RELATIONS)
PLACE_IDX = index_table(PLACE_VERBS)


def match_indexed(words: list[str], i: int, idx: dict, table=None) -> tuple[int, Any]:
    if i >= len(words):
        return 0, None
    best_len, best_val = 0, None
    for key in idx.get(words[i], ()):
        n = len(key)
        if n > best_len and tuple(words[i:i + n]) == key:
            best_len = n
            best_val = table[key] if table is not None else key
    return best_len, best_val


def remove_fillers(toks: list[Tok], protect: Optional[dict] = None) -> list[Tok]:
    """Remove filler words / phrases, "like" as a filler, a wake word after a comma, and stutters.

    Args:
        toks: tokens of the cleaned text.
        protect: index (:func:`index_table`) of phrases kept even when they are fillers
            (the grammar reads "actually" / "I mean" as new-command markers first).
    """
    words = [t.low for t in toks]
    keep: list[Tok] = []
    i = 0
    n = len(words)
    while i < n:
        if protect is not None:
            ln, _ = match_indexed(words, i, protect)
            if ln:
                keep.extend(toks[i:i + ln])
                i += ln
                continue
        ln, _ = match_indexed(words, i, FILLER_IDX)
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
            if prev is None or prev in PUNCT or nxt is None or nxt in PUNCT or nxt in ARTICLES or prev in ARTICLES:
                i += 1
                continue
        if w in WAKE_WORDS:
            prev = keep[-1].low if keep else None
            nxt = words[i + 1] if i + 1 < n else None
            if prev == "," and (nxt is None or nxt in PUNCT):
                i += 1
                continue
        keep.append(toks[i])
        i += 1
    return collapse_stutters(keep)


def collapse_stutters(toks: list[Tok]) -> list[Tok]:
    """Drop a word that repeats the word before it ("the the", "red red"), also across one comma
    ("the, the red ball"); punctuation itself is kept.  Idempotent."""
    out: list[Tok] = []
    for t in toks:
        if t.low not in PUNCT:
            if out and out[-1].low == t.low:
                continue
            if len(out) >= 2 and out[-1].low == "," and out[-2].low == t.low:
                out.pop()
                continue
        out.append(t)
    return out


def starts_action(words: list[str], i: int) -> bool:
    """Whether an action verb ("pick up", "grab") or a place verb ("put", "move") starts at ``words[i]``."""
    return match_indexed(words, i, ACTION_IDX)[0] > 0 or match_indexed(words, i, PLACE_IDX)[0] > 0


def match_skipping_articles(words: list[str], i: int, idx: dict, table: dict) -> tuple[int, Any]:
    """Longest key of ``table`` at ``words[i]``, skipping "the"/"a"/"an" between its words
    ("to the left of" matches ``("to", "left", "of")``).

    Returns:
        (number of words consumed, table value) or ``(0, None)``.
    """
    best_len, best_val = 0, None
    for key in idx.get(words[i] if i < len(words) else "", ()):
        j, ok = i, True
        for k, part in enumerate(key):
            while k and j < len(words) and words[j] in ("the", "a", "an"):
                j += 1
            if j >= len(words) or words[j] != part:
                ok = False
                break
            j += 1
        if ok and j - i > best_len:
            best_len, best_val = j - i, table[key]
    return best_len, best_val


def split_clauses(toks: list[Tok]) -> list[list[Tok]]:
    """Split at sentence ends, "and then", "then", "after that", and "and"/"," + verb ("and" + article)."""
    words = [t.low for t in toks]
    clauses: list[list[Tok]] = []
    cur: list[Tok] = []
    i, n = 0, len(words)

    def flush():
        nonlocal cur
        if cur:
            clauses.append(cur)
        cur = []

    while i < n:
        w = words[i]
        nxt = words[i + 1] if i + 1 < n else None
        if w in CLAUSE_END:
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
        if w == "and" and nxt is not None and (nxt in ARTICLES or starts_action(words, i + 1)) and cur:
            flush()
            i += 1
            continue
        if w == "," and nxt is not None and starts_action(words, i + 1) and cur:
            flush()
            i += 1
            continue
        cur.append(toks[i])
        i += 1
    flush()
    return clauses


def strip_leading(words: list[str]) -> list[str]:
    i = 0
    n = len(words)
    while i < n:
        w = words[i]
        if w in PUNCT:
            i += 1
        elif w in WAKE_WORDS:
            i += 1
        elif w in LEADING_MARKERS:
            nxt = words[i + 1] if i + 1 < n else None
            if w in GUARDED_MARKERS and not (nxt == "," or (nxt is not None and starts_action(words, i + 1))
                                               or nxt is None):
                break
            i += 1
        else:
            break
    return words[i:]


def strip_trailing(words: list[str]) -> list[str]:
    changed = True
    while changed and words:
        changed = False
        while words and words[-1] in PUNCT:
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


