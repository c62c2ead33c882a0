"""Understanding spoken-style commands ("um, pick up the red ball on the left", "put it in the bowl").

The text usually comes from a speech-to-text engine (e.g. Whisper), so the
parser expects and removes what such engines produce besides the command
(:mod:`clip_perception.utterance`):

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
  ``please``, ``just``, ``kindly``, "you know", "kind of", "sort of", "I mean",
  "could you", ...), "like" only as a filler (next to a comma, at the start of a
  clause, before or after an article: "the, like, red ball", "the like green
  bottle"), stutters ("the the", "red red"), and discourse markers at the start
  of a clause (``okay``/``ok``, ``so``, ``well``, ``now``, ...).  Words that
  merely contain a filler ("plum", "umbrella", "bowl", "likely") are untouched;
* wake words: "robot, ...", "hey robot", "ok robot", "..., robot".

Each clause is then split into an action verb phrase (canonical forms in
:data:`ACTIONS`; ``"find"`` when none) and an object phrase
(:mod:`clip_perception.phrase`), from which the parser takes colours,
material/size/shade attributes, a spatial qualifier ("the cup on the left",
"the second bottle from the right", "the nearest can", "the leftmost cup", "the
bigger one"), a location qualifier ("the cereal box on the top shelf") and a
reference object with its relation ("the cup next to the red plate").  Two
commands joined by "and then", ", then", "after that", a sentence end or "and" +
a new verb / article become an ordered list; "the red and white mug" stays one
object.  Intents (:mod:`clip_perception.grammar`): pick-and-place ("put the apple
in the bowl", "pick up X and put it on Y": ``destination`` and
``destination_relation``), stop ("stop", "cancel", "never mind"), corrections
("no, the other one", "the blue one", "actually the mug") and pronouns ("put it
in the box": ``refers_to_current``), resolved against the conversation by
:class:`clip_perception.dialogue.Dialogue`.

Status values:

* ``"ok"``: at least one command with a named object (``commands``);
* ``"no_command"``: empty / filler / artefact / hallucination / pronoun only
  ("pick it up": see ``actions``) / a one-word reply ("no") / a control word /
  stop / a correction that needs the current target -- the reason says which;
  a caller without dialogue state ignores it and keeps its current target;
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
from typing import Any

from . import utterance as U
from .grammar import parse_tokens
from .lexicon import (ACTIONS, ARTICLES, COLOR_WORDS, CONTROL_PHRASES, DEFAULT_ACTION,  # noqa: F401 (re-exported)
                      DESTINATION_RELATION_KINDS, DESTINATION_RELATIONS, DIRECTIONS, ENGLISH_VOCAB, FILLER_PHRASES,
                      FILLER_WORDS, FOREIGN_WORDS, HALLUCINATIONS, MATERIAL_WORDS, MAX_COMMAND_CHARS, MAX_COMMANDS,
                      MAX_INPUT_CHARS, OBJECT_NOUNS, ORDINALS, PLACE_ACTION, PLACE_VERBS, PRONOUNS, RELATION_KINDS,
                      RELATIONS, SHADE_WORDS, SIZE_WORDS, SPATIAL_KINDS, STOP_PHRASES, SUPERLATIVES)
from .parsed import (CORRECTION_KINDS, INTENT_NONE, INTENT_STOP, INTENTS, STATUS_NO_COMMAND, STATUS_OK,
                     STATUS_UNSUPPORTED, CommandParse, Correction, ParsedCommand)
from .phrase import SpatialQualifier, parse_object_words
from .utterance import clean_text

LOG = logging.getLogger(__name__)

#: The destination relations of a pick-and-place command (same values as ``placement.PLACE_RELATIONS``).
PLACE_RELATIONS = DESTINATION_RELATION_KINDS

__all__ = ["parse_command", "parse_object_phrase", "clean_text", "ParsedCommand", "CommandParse", "Correction",
           "SpatialQualifier", "ACTIONS", "PLACE_ACTION", "DEFAULT_ACTION", "SPATIAL_KINDS", "RELATION_KINDS",
           "DESTINATION_RELATION_KINDS", "PLACE_RELATIONS", "INTENTS", "CORRECTION_KINDS", "MAX_INPUT_CHARS", "MAX_COMMAND_CHARS",
           "MAX_COMMANDS", "STATUS_OK", "STATUS_NO_COMMAND", "STATUS_UNSUPPORTED"]


def parse_object_phrase(phrase: str) -> ParsedCommand:
    """Parse an object phrase without an action ("the red plate") into a :class:`ParsedCommand`.

    Used by the ranking for reference phrases.  ``action`` is ``"find"``; an
    empty phrase gives ``target == ""``.  Never raises.
    """
    try:
        text, _ = clean_text(phrase)
        words = [t.low for t in U.remove_fillers(U.tokenize(text))]
        obj, _ = parse_object_words(words)
    except Exception:  # pragma: no cover - defensive, see parse_command
        LOG.exception("parse_object_phrase failed on %r", str(phrase)[:200])
        return ParsedCommand(raw=str(phrase)[:MAX_COMMAND_CHARS], action=DEFAULT_ACTION, target="", noun="")
    return ParsedCommand(raw=str(phrase)[:MAX_COMMAND_CHARS], action=DEFAULT_ACTION, target=obj.target,
                         noun=obj.noun, colors=obj.colors, attributes=obj.attributes, spatial=obj.spatial,
                         relation=obj.relation, reference=obj.reference, location=obj.location)


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
        ``"no_command"`` (nothing to look for by itself: keep the current target, or
        see ``intent`` -- stop, correction, pronoun) or ``"unsupported"`` (not
        English; ``reason`` says why).

    Never raises: an unexpected internal error is logged and reported as
    ``no_command`` with reason ``"internal error: ..."``.
    """
    try:
        return _parse(text)
    except Exception as exc:  # pragma: no cover - the fuzz tests check this path is never taken
        LOG.exception("parse_command failed")
        return CommandParse(STATUS_NO_COMMAND, f"internal error: {type(exc).__name__}")


def _screen_text(text: Any, cleaned: str, note: str) -> CommandParse | None:
    """No words, or mostly non-Latin script: the parse, else ``None``."""
    if not any(ch.isalnum() for ch in cleaned):
        if cleaned:
            why = "no words (only punctuation or symbols)"
        elif isinstance(text, str) and text.strip():
            why = "only speech-to-text artefacts (non-speech tags) or control characters"
        else:
            why = "empty input"
        return CommandParse(STATUS_NO_COMMAND, _join_reason(why, note))
    letters, non_latin, scripts = U.non_latin_scripts(cleaned)
    if letters and non_latin * 2 > letters:
        return CommandParse(
            STATUS_UNSUPPORTED,
            _join_reason(f"non-English text ({', '.join(s.lower() for s in scripts)} script): the CLIP text "
                         f"encoder only understands English", note))
    return None


def _screen_words(words_all: list[str], notes: list) -> CommandParse | None:
    """Whole-utterance checks on the words: numbers, stop / control words, hallucinations, not English."""
    note = "; ".join(notes)
    if not words_all:
        return CommandParse(STATUS_NO_COMMAND, _join_reason("no words", note))
    if not any(ch.isalpha() for w in words_all for ch in w):
        return CommandParse(STATUS_NO_COMMAND, _join_reason("no words (only numbers)", note))
    utterance = " ".join(words_all)
    if utterance in STOP_PHRASES:
        return CommandParse(STATUS_NO_COMMAND, _join_reason(
            f"'{utterance}': stop the current command (nothing to look for)", note), intent=INTENT_STOP)
    if utterance in CONTROL_PHRASES:
        return CommandParse(STATUS_NO_COMMAND, _join_reason(
            f"'{utterance}' is a control word, not an object to look for", note), intent=INTENT_NONE)
    if utterance in HALLUCINATIONS:
        return CommandParse(STATUS_NO_COMMAND, _join_reason(
            f"'{utterance}' alone is not a command (typical speech-to-text output on silence, politeness or a reply)",
            note))
    known = sum(1 for w in words_all if w in ENGLISH_VOCAB)
    foreign = sum(1 for w in words_all if w in FOREIGN_WORDS)
    accented = any(not w.isascii() for w in words_all)
    if known == 0 and (foreign or accented or len(words_all) >= 4):
        return CommandParse(STATUS_UNSUPPORTED, _join_reason(
            "no recognisable English words: the CLIP text encoder only understands English", note))
    if foreign >= 2 and foreign > known:
        return CommandParse(STATUS_UNSUPPORTED, _join_reason(
            "mostly non-English words: the CLIP text encoder only understands English", note))
    return None


def _parse(text: Any) -> CommandParse:
    cleaned, notes = clean_text(text)
    early = _screen_text(text, cleaned, "; ".join(notes))
    if early is not None:
        return early
    toks = U.tokenize(cleaned)
    dropped = [t.low for t in toks if not U.is_latin_word(t.low)]
    if dropped:
        toks = [t for t in toks if U.is_latin_word(t.low)]
        notes.append(f"ignored {len(dropped)} non-English word(s)")
    early = _screen_words([t.low for t in toks if t.low not in U.PUNCT], notes)
    if early is not None:
        return early
    return parse_tokens(toks, cleaned, notes)
