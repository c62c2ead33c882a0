"""Clause-level grammar: stop, corrections, pick-and-place, pronouns, "A and then B".

:func:`parse_tokens` turns the tokens of a cleaned, screened utterance (English, not empty) into a
:class:`parsed.CommandParse`.  Order of the checks:

1. utterance-initial markers are set aside: wake words and discourse markers ("okay", "robot,"),
   negations ("no", "not that one", "wrong one") and new-command markers ("actually", "I meant",
   "sorry");
2. fillers and stutters are removed (:func:`utterance.remove_fillers`);
3. stop: every comma-separated part is a stop phrase ("stop", "cancel", "never mind", "that's all",
   "stop looking for the ball") or politeness;
4. corrections of one clause: "the other one" / "the other cup" / "not that one" -> ``other``;
   "the blue one" / "the one on the left" / "the bigger one" / "the one next to the plate" ->
   ``refine``; a negation or a new-command marker before a full command -> ``new``;
5. clauses (:func:`utterance.split_clauses`): a place verb with a destination relation is a
   pick-and-place ("put the apple in the bowl"); an action verb + object is a command as before;
   an object that is a pronoun ("pick it up", "put it in the box") refers to the current target,
   or to the previous clause's object in the same utterance ("pick up the cup and put it in the
   bowl" is one pick-and-place command).

Anything else is ``no_command`` with a reason; nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import utterance as U
from .lexicon import (ACTIONS, ARTICLES, CONTROL_PHRASES, CURRENT_TARGET_PHRASES, DEFAULT_ACTION,
                      DESTINATION_RELATIONS, DIR_TAIL, DIRECTIONS, EXCLUDING_NEGATIONS, HALLUCINATIONS,
                      INTENSIFIERS, MAX_COMMANDS, NEGATION_PHRASES, NEW_MARKERS, ORDINALS, OTHER_WORDS,
                      PLACE_ACTION, SELF_WORDS, STOP_PHRASES, STOP_PREFIXES, SUPERLATIVES,
                      UNSUPPORTED_PLACE_RELATIONS)
from .parsed import (INTENT_CORRECTION, INTENT_NONE, INTENT_STOP, STATUS_NO_COMMAND, STATUS_OK, CommandParse,
                     Correction, ParsedCommand)
from .phrase import ObjectParse, parse_object_words
from .utterance import PUNCT, Tok, match_indexed, match_skipping_articles

_NEG_IDX = U.index_table(NEGATION_PHRASES)
_NEW_IDX = U.index_table(NEW_MARKERS)
_DEST_IDX = U.index_table(DESTINATION_RELATIONS)
_UNSUP_IDX = U.index_table(UNSUPPORTED_PLACE_RELATIONS)
_STOP_IDX = U.index_table(STOP_PREFIXES)
_SPATIAL_WORDS = frozenset(DIRECTIONS) | INTENSIFIERS | DIR_TAIL | frozenset(SUPERLATIVES) | frozenset(ORDINALS) \
    | {"one", "ones", "last"}
_PLACE_PARTICLES = ("down", "back", "up")
_RELATIONS_SAID = ("in, on, next to, left of, right of, in front of or behind")
_PRONOUN_REASON = ("the object is a pronoun ('it', 'that one'): it means the current target, which only the "
                   "dialogue state knows (dialogue.Dialogue)")


@dataclass
class _Prefix:
    negated: bool = False  # "no", "not that one", ...
    excluding: bool = False  # a negation that rejects the current target by itself ("not that one")
    new_marker: bool = False  # "actually", "I meant", "sorry", or a trailing "instead"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def strip_prefix(toks: list[Tok]) -> tuple[list[Tok], _Prefix]:
    """Set aside utterance-initial wake words, discourse markers, negations and new-command markers."""
    flags = _Prefix()
    i = 0
    for _ in range(len(toks) + 1):  # each round consumes at least one token or stops
        words = [t.low for t in toks[i:i + 12]]
        k = len(words) - len(U.strip_leading(words))
        if k == len(words) and i + k < len(toks):
            k = max(k - 1, 0)  # strip_leading saw only a window: keep its last word for the next round
        i += k
        words = words[k:]
        ln, key = match_indexed(words, 0, _NEG_IDX)
        if ln:
            flags.negated = True
            flags.excluding = flags.excluding or key in EXCLUDING_NEGATIONS
            i += ln
            continue
        ln, _ = match_indexed(words, 0, _NEW_IDX)
        if ln:
            flags.new_marker = True
            i += ln
            continue
        if k == 0:
            break
    return toks[i:], flags


def _strip_instead(toks: list[Tok], flags: _Prefix) -> list[Tok]:
    """A trailing "instead" ("the mug instead") marks a new command."""
    idx = [j for j, t in enumerate(toks) if t.low not in PUNCT]
    if len(idx) > 1 and toks[idx[-1]].low == "instead":
        flags.new_marker = True
        return toks[:idx[-1]] + toks[idx[-1] + 1:]
    return toks


def _clause_words(toks: list[Tok]) -> list[str]:
    return U.strip_trailing(U.strip_leading([t.low for t in toks]))


def is_stop(toks: list[Tok]) -> Optional[str]:
    """The stop phrase when every comma-separated part is a stop phrase or politeness, else ``None``."""
    parts: list[list[str]] = [[]]
    for t in toks:
        if t.low in PUNCT:
            parts.append([])
        else:
            parts[-1].append(t.low)
    said = None
    for part in parts:
        words = U.strip_trailing(U.strip_leading(part))
        plain = " ".join(words)
        if not plain or plain in HALLUCINATIONS:
            continue
        if plain in STOP_PHRASES or match_indexed(words, 0, _STOP_IDX)[0]:
            said = said or plain
            continue
        return None
    return said


def _is_current(words: list[str]) -> bool:
    words = [w for w in words if w not in PUNCT]
    while words and words[-1] in _PLACE_PARTICLES + ("me", "us"):
        words = words[:-1]
    return bool(words) and tuple(words) in CURRENT_TARGET_PHRASES


def _command(raw: str, action: str, obj: ObjectParse) -> ParsedCommand:
    return ParsedCommand(raw=raw, action=action, target=obj.target, noun=obj.noun, colors=obj.colors,
                         attributes=obj.attributes, spatial=obj.spatial, relation=obj.relation,
                         reference=obj.reference, location=obj.location)


def _spatial_only(words: list[str]) -> bool:
    """Whether ``words`` start with position words only, up to the end or the next destination
    relation ("on the left in the bowl": "on the left" qualifies the picked object)."""
    j = 0
    while j < len(words) and (words[j] in _SPATIAL_WORDS or words[j] in ARTICLES):
        j += 1
    if j == len(words):
        return True
    return j > 0 and match_skipping_articles(words, j, _DEST_IDX, DESTINATION_RELATIONS)[0] > 0


def _parse_place(words: list[str], verb_len: int, raw: str) -> Optional[tuple[Optional[ParsedCommand], str]]:
    """A place verb + object + destination relation + destination ("put the apple in the bowl").

    Returns:
        ``None`` when no destination relation follows the object; else (command or ``None``,
        reason when ``None``).
    """
    rest = words[verb_len:]
    for i in range(1, len(rest)):
        ln, rel = match_skipping_articles(rest, i, _DEST_IDX, DESTINATION_RELATIONS)
        bad = None
        if not ln:
            ln, bad = match_skipping_articles(rest, i, _UNSUP_IDX, UNSUPPORTED_PLACE_RELATIONS)
            if not ln:
                continue
        pick_words, dest_words = rest[:i], rest[i + ln:]
        if _spatial_only(dest_words):
            continue
        if bad is not None:
            return None, (f"'{bad}' is not a place relation this package computes a place point for "
                          f"(say {_RELATIONS_SAID})")
        while pick_words and pick_words[-1] in _PLACE_PARTICLES:
            pick_words = pick_words[:-1]
        if all(w in SELF_WORDS for w in dest_words) or _is_current(dest_words) or dest_words == ["there"]:
            return None, "the destination is not an object in view (say which object to place it at)"
        dest, _ = parse_object_words(dest_words)
        if not dest.target:
            return None, "the destination names no object"
        destination = _command(" ".join(dest_words), DEFAULT_ACTION, dest)
        if _is_current(pick_words):
            return ParsedCommand(raw=raw, action=PLACE_ACTION, target="", noun="", destination=destination,
                                 destination_relation=rel, refers_to_current=True), ""
        pick, _ = parse_object_words(pick_words)
        if not pick.target:
            return None, "the pick-and-place command names no object to pick"
        cmd = _command(raw, PLACE_ACTION, pick)
        cmd.destination, cmd.destination_relation = destination, rel
        return cmd, ""
    return None


def parse_clause(words: list[str], raw: str, prev_action: Optional[str]) -> tuple[Optional[ParsedCommand], str]:
    """One clause (leading markers and trailing politeness stripped) -> (command, reason).

    The command is ``None`` (with a reason, possibly ``""``) when the clause names nothing; its
    ``target`` is ``""`` only when ``refers_to_current``.
    """
    words = [w for w in words if w not in PUNCT]
    if not words:
        return None, ""
    if words[0] == "not":
        return None, "a negated object ('not ...') names nothing to look for"
    verb_len, _ = match_indexed(words, 0, U.PLACE_IDX)
    if verb_len:
        place = _parse_place(words, verb_len, raw)
        if place is not None:
            return place
    ln, action = match_indexed(words, 0, U.ACTION_IDX, ACTIONS)
    obj_words = words[ln:]
    if verb_len and (not ln or ln < verb_len):
        if words[-1] != "down":
            return None, (f"'{' '.join(words[:verb_len])}' needs a destination: say where to put it "
                          f"({_RELATIONS_SAID} an object)")
        action, obj_words = "drop", words[verb_len:-1]  # "put it down", "set the cup down"
    explicit = action is not None
    if action is None:
        action = prev_action or DEFAULT_ACTION
    else:
        while obj_words and obj_words[0] in ("me", "us"):
            obj_words = obj_words[1:]
        if action == "pick up" and obj_words and obj_words[-1] == "up":
            obj_words = obj_words[:-1]  # "pick the cup up"
    if _is_current(obj_words):
        if not explicit:  # "that one" alone: a pointing reply, not a command
            return None, _PRONOUN_REASON
        return ParsedCommand(raw=raw, action=action, target="", noun="", refers_to_current=True), ""
    obj, notes = parse_object_words(obj_words)
    if not obj.target:
        return None, _join(*notes)
    cmd = _command(raw, action, obj)
    return cmd, _join(*notes)


def _has_other_clause(toks: list[Tok]) -> bool:
    return len(U.split_clauses(toks)) > 1


def parse_correction(toks: list[Tok], flags: _Prefix,
                     raw: str) -> Optional[tuple[Correction, Optional[ParsedCommand]]]:
    """A one-clause correction: (correction, stand-alone command or ``None``), or ``None``.

    The stand-alone command is the reading without a current command ("the blue one" ->
    "blue object", as before); ``kind == "new"`` returns ``(correction, None)`` and the caller
    parses the command itself.
    """
    if _has_other_clause(toks):
        return (Correction("new", flags.excluding), None) if flags.negated or flags.new_marker else None
    words = [w for w in _clause_words(toks) if w not in PUNCT]
    if not words:
        return (Correction("other", True), None) if flags.excluding else None
    if match_indexed(words, 0, U.PLACE_IDX)[0]:
        return (Correction("new", flags.excluding), None) if flags.negated or flags.new_marker else None
    ln, action = match_indexed(words, 0, U.ACTION_IDX, ACTIONS)
    obj_words = [w for w in words[ln:] if w not in ("me", "us")]
    if any(w in OTHER_WORDS for w in obj_words):
        rest = [w for w in obj_words if w not in OTHER_WORDS and w not in ("than", "something", "anything")]
        obj, _ = parse_object_words(rest)
        noun_given = bool(obj.target) and obj.noun not in ("object", "objects")
        qualified = bool(obj.colors or obj.attributes or obj.spatial or obj.relation or obj.location)
        phrase = _command(raw, action or DEFAULT_ACTION, obj) if noun_given or qualified else None
        return Correction("other", True, phrase, noun_given, action), None
    if {"one", "ones"} & set(obj_words):
        obj, _ = parse_object_words(obj_words)
        qualified = bool(obj.colors or obj.attributes or obj.spatial or obj.relation or obj.location)
        if obj.target and obj.noun in ("object", "objects") and qualified:
            phrase = _command(raw, action or DEFAULT_ACTION, obj)
            return Correction("refine", flags.excluding, phrase, False, action), phrase
    if flags.negated or flags.new_marker:
        return Correction("new", flags.excluding), None
    return None


def _resolve_pronoun(cmd: ParsedCommand, actions: list, spans: list, span: tuple,
                     commands: list) -> None:
    """Append ``cmd`` to ``actions``: a pronoun refers to the previous clause's object; a
    pick-and-place "put it in Y" right after "pick up X" becomes one command (also in ``commands``)."""
    prev = actions[-1] if actions else None
    if not cmd.refers_to_current or prev is None or not prev.target:
        actions.append(cmd)
        spans.append(span)
        if cmd.target:
            commands.append(cmd)
        return
    resolved = cmd.with_object(prev)
    resolved.refers_to_current = prev.refers_to_current
    if cmd.is_pick_place and not prev.is_pick_place:
        resolved.raw = f"{prev.raw} ... {cmd.raw}" if prev.raw != cmd.raw else cmd.raw
        if commands and commands[-1] is prev:
            commands[-1] = resolved
        actions[-1] = resolved
        spans[-1] = (spans[-1][0], span[1])
        return
    actions.append(resolved)  # "pick up the umbrella and then drop it": not a new object
    spans.append(span)


def parse_clauses(toks: list[Tok], cleaned: str, notes: list) -> CommandParse:
    """The "A and then B" loop over clauses (see the module docstring)."""
    commands: list[ParsedCommand] = []
    actions: list[ParsedCommand] = []
    spans: list[tuple] = []
    reasons: list[str] = []
    prev_action: Optional[str] = None
    dropped = 0
    for clause in U.split_clauses(toks):
        if len(actions) >= MAX_COMMANDS:
            dropped += 1
            continue
        words = _clause_words(clause)
        plain = " ".join(w for w in words if w not in PUNCT)
        if not plain or plain in HALLUCINATIONS or plain in CONTROL_PHRASES or plain in STOP_PHRASES:
            continue
        raw = cleaned[clause[0].start:clause[-1].end]
        cmd, why = parse_clause(words, raw, prev_action)
        if why:
            reasons.append(why)
        if cmd is None:
            continue
        prev_action = cmd.action if cmd.action != PLACE_ACTION else prev_action
        _resolve_pronoun(cmd, actions, spans, (clause[0].start, clause[-1].end), commands)
    if dropped:
        notes.append(f"only the first {MAX_COMMANDS} commands were kept ({dropped} more ignored)")
    if commands:
        return CommandParse(STATUS_OK, _join(*notes), commands, actions=actions)
    if actions and actions[0].refers_to_current:
        return CommandParse(STATUS_NO_COMMAND, _join(_PRONOUN_REASON, *notes), [], actions=actions)
    why = reasons[0] if reasons else "no object named (only filler words, politeness, or a pronoun such as 'it')"
    return CommandParse(STATUS_NO_COMMAND, _join(why, *notes), [], intent=INTENT_NONE)


def parse_tokens(toks: list[Tok], cleaned: str, notes: list) -> CommandParse:
    """Tokens of a screened utterance -> :class:`CommandParse` (see the module docstring)."""
    # fillers go before the markers are read ("not um that one"), except the markers themselves
    rest, flags = strip_prefix(U.remove_fillers(toks, protect=_NEW_IDX))
    rest = _strip_instead(U.remove_fillers(rest), flags)
    stop = is_stop(rest)
    if stop is not None:
        return CommandParse(STATUS_NO_COMMAND, _join(f"'{stop}': stop the current command (nothing to look for)",
                                                     *notes), intent=INTENT_STOP)
    raw = cleaned[rest[0].start:rest[-1].end] if rest else ""
    corr = parse_correction(rest, flags, raw)
    if corr is None:
        return parse_clauses(rest, cleaned, notes)
    correction, standalone = corr
    if correction.kind == "new":
        res = parse_clauses(rest, cleaned, notes)
        if res.actions:
            res.intent, res.correction = INTENT_CORRECTION, correction
        return res
    if standalone is not None:
        return CommandParse(STATUS_OK, _join(*notes), [standalone], intent=INTENT_CORRECTION,
                            correction=correction)
    said = " ".join(t.low for t in toks if t.low not in PUNCT)
    return CommandParse(STATUS_NO_COMMAND, _join(f"'{said}' is a correction (another candidate than the current "
                                                 f"target): it needs the dialogue state (dialogue.Dialogue)",
                                                 *notes), intent=INTENT_CORRECTION, correction=correction)
