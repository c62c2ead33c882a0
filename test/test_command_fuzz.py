"""command.py robustness: arbitrary Unicode never raises, work is bounded, non-English is 'unsupported'.

The number of hypothesis examples per test comes from ``CLIP_PERCEPTION_FUZZ_EXAMPLES``
(default 200).  No timing asserts: bounded work is checked structurally (the
parser never reads past its documented caps).
"""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clip_perception import command, utterance
from clip_perception.command import (ACTIONS, CORRECTION_KINDS, DESTINATION_RELATION_KINDS, INTENTS, MAX_COMMAND_CHARS,
                                     MAX_INPUT_CHARS, PLACE_ACTION, RELATION_KINDS, SPATIAL_KINDS, parse_command)
from clip_perception.dialogue import Dialogue
from clip_perception.colors import COLOR_NAMES

EXAMPLES = int(os.environ.get("CLIP_PERCEPTION_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Every Unicode category, including control (Cc), format (Cf: RTL marks, ZWJ), surrogates (Cs),
# private use (Co) and unassigned (Cn).
ANY_CHAR = st.characters(exclude_categories=())
SPECIAL = ["\u202e", "\u200f", "\u200d", "\u0000", "\x1b[31m", "\ufeff", "\ud800", "🔴", "👍🏽", "שלום", "مرحبا",
           "\r\n", "\t", "[BLANK_AUDIO]", "(inaudible)", "*cough*", "♪", "<|endoftext|>", "[", "(", "*", "-", "'"]
VOCAB = sorted({w for key in ACTIONS for w in key} | {"the", "a", "red", "white", "and", "then", "ball", "cup",
                                                      "left", "right", "of", "next", "to", "on", "second", "from",
                                                      "um", "like", ",", ".", "robot", "please", "nearest", "it",
                                                      "put", "place", "move", "into", "onto", "top", "beside",
                                                      "behind", "front", "in", "down", "stop", "cancel", "never",
                                                      "mind", "no", "not", "that", "one", "other", "another",
                                                      "actually", "meant", "i", "shelf", "bigger", "kind",
                                                      "you", "know", "uh", "instead", "this", "them"})
MIXED = st.lists(st.one_of(st.sampled_from(VOCAB), st.sampled_from(SPECIAL), st.text(ANY_CHAR, max_size=8)),
                 max_size=30).map(" ".join)

ACTION_VALUES = set(ACTIONS.values()) | {"find", PLACE_ACTION}


def _check_command(c, named=True):
    if named or not c.refers_to_current:
        assert c.target and c.target == c.target.strip()
        assert c.noun
    else:
        assert c.target == "" or c.target == c.target.strip()
    assert c.action in ACTION_VALUES
    assert set(c.colors) <= set(COLOR_NAMES)
    assert c.spatial is None or (c.spatial.kind in SPATIAL_KINDS and c.spatial.ordinal >= 1)
    assert c.relation is None or (c.relation in RELATION_KINDS and c.reference)
    assert (c.destination is None) == (c.destination_relation is None)
    if c.destination is not None:
        assert c.action == PLACE_ACTION and c.destination_relation in DESTINATION_RELATION_KINDS
        assert c.destination.target and c.destination.destination is None
    c.summary()


def _check_valid(res):
    assert res.status in ("ok", "no_command", "unsupported")
    assert isinstance(res.reason, str)
    assert not res.reason.startswith("internal error")
    if res.status == "ok":
        assert res.commands
        assert len(res.commands) <= command.MAX_COMMANDS
    else:
        assert res.commands == [] and res.reason
    assert res.intent in INTENTS
    for c in res.commands:
        _check_command(c)
    for c in res.actions:
        _check_command(c, named=False)
    assert all(any(c is a for a in res.actions) for c in res.commands)
    if res.correction is not None:
        assert res.intent == "correction" and res.correction.kind in CORRECTION_KINDS
    if res.intent == "stop":
        assert res.status == "no_command" and not res.actions
    json.dumps(res.to_dict())


@FUZZ
@given(st.text(ANY_CHAR, max_size=300))
def test_arbitrary_unicode_never_raises(text):
    """Case: any Unicode text (control chars, surrogates, RTL, emoji) parses without raising to a valid status."""
    res = command._parse(text)  # the private entry point: no safety net, so a bug would raise here
    _check_valid(res)
    _check_valid(parse_command(text))


@FUZZ
@given(MIXED)
def test_vocabulary_mixed_with_noise_never_raises(text):
    """Case: command words mixed with artefacts, RTL marks, emoji and random text parse to a valid, stable result."""
    res = command._parse(text)
    _check_valid(res)
    assert parse_command(text) == res  # deterministic


def test_100k_characters_reads_only_the_cap(monkeypatch):
    """Case: a 100,000-char input: only MAX_INPUT_CHARS are read, MAX_COMMAND_CHARS tokenised (bounded work)."""
    seen = {"tokenize": 0, "strip": 0}
    real_tokenize, real_strip = utterance.tokenize, utterance.strip_controls

    def tokenize(text):
        seen["tokenize"] = max(seen["tokenize"], len(text))
        return real_tokenize(text)

    def strip(text):
        seen["strip"] += 1
        if seen["strip"] == 1:  # first pass works on the raw input
            assert len(text) <= MAX_INPUT_CHARS
        return real_strip(text)

    monkeypatch.setattr(utterance, "tokenize", tokenize)
    monkeypatch.setattr(utterance, "strip_controls", strip)
    head = "pick up the red ball "
    for filler in ("x" * 100_000, ("and then the cup " * 7000)[:100_000], "[" * 100_000, "(" * 100_000,
                   "*a" * 50_000, "a-" * 50_000, "a'" * 50_000, "\u202e" * 100_000, "♪" * 100_000,
                   ", like" * 20_000):
        text = head + filler
        res = parse_command(text)
        _check_valid(res)
        assert "only the first" in res.reason
        assert 0 < seen["tokenize"] <= MAX_COMMAND_CHARS and seen["strip"] >= 1
        # nothing after the cap influences the result
        assert parse_command(text[:MAX_INPUT_CHARS] + "zzz grab the blue cup").commands == res.commands


def test_tail_beyond_cap_is_ignored():
    """Case: two 100k inputs differing only after MAX_INPUT_CHARS give identical parses."""
    base = "grab the second cup from the left " + "um " * 40_000
    a = parse_command(base + "and then the red ball")
    b = parse_command(base + "\u0000" * 500 + "مرحبا")
    assert (a.status, a.commands) == (b.status, b.commands)
    assert a.first.target == "cup" and a.first.spatial.ordinal == 2


@pytest.mark.parametrize("text,script", [
    ("خذ الكرة الحمراء", "arabic"),
    ("拿起红色的球", "cjk"),
    ("возьми красный мяч", "cyrillic"),
    ("赤いボールを取って", "cjk"),
    ("लाल गेंद उठाओ", "devanagari"),
    ("빨간 공을 집어", "hangul"),
    ("πάρε την κόκκινη μπάλα", "greek"),
    ("קח את הכדור האדום", "hebrew"),
])
def test_non_latin_scripts_unsupported(text, script):
    """Case: Arabic/Chinese/Russian/Japanese/Hindi/Korean/Greek/Hebrew commands -> unsupported, script named."""
    res = parse_command(text)
    assert res.status == "unsupported" and res.commands == []
    assert script in res.reason


@pytest.mark.parametrize("text", ["recoge la pelota roja", "nimm den roten Ball", "prends la balle rouge",
                                  "qwzx vbnm plkj hgfd"])
def test_latin_script_foreign_unsupported(text):
    """Case: Spanish/German/French commands and strings with no English word -> unsupported."""
    res = parse_command(text)
    assert res.status == "unsupported", res
    assert "English" in res.reason


@pytest.mark.parametrize("text,status", [
    ("🔴⚽👍", "no_command"),
    ("\u202epick up the red ball\u202c", "ok"),
    ("\u200fgrab\u200f the cup", "ok"),
    ("pick up the \x00red\x07 ball", "ok"),
    ("\ud800\udfff", "no_command"),
    ("pick up the 红色 ball", "ok"),
])
def test_special_characters(text, status):
    """Case: emoji-only, RTL/format marks around a command, control chars, lone surrogates, a stray CJK word."""
    res = parse_command(text)
    assert res.status == status, res
    _check_valid(res)


# Up to 100,000 characters: a random Unicode chunk (any category) repeated, optionally behind a
# real command, with RTL marks / emoji / control characters sprinkled in.
LONG = st.tuples(
    st.sampled_from(["", "pick up the red ball ", "\u202egrab the cup\u202c ", "🔴 find the blue box "]),
    st.text(ANY_CHAR, min_size=1, max_size=40),
    st.integers(0, 100_000),
).map(lambda t: (t[0] + t[1] * (t[2] // len(t[1]) + 1))[:max(len(t[0]), t[2])])


@settings(max_examples=max(10, EXAMPLES // 20), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(LONG)
def test_long_arbitrary_unicode_up_to_100k_valid_and_tail_beyond_cap_unread(text):
    """Case: arbitrary Unicode up to 100,000 characters (with RTL marks, emoji, controls): a valid
    result, and nothing past MAX_INPUT_CHARS changes it (work is bounded by the cap, so linear)."""
    res = parse_command(text)
    _check_valid(res)
    cut = parse_command(text[:MAX_INPUT_CHARS] + "zzz grab the blue cup")
    assert (cut.status, cut.commands) == (res.status, res.commands) or len(text) <= MAX_INPUT_CHARS


# Lower-case letters of scripts the English CLIP tokenizer cannot read (Cyrillic, Greek, Arabic,
# Hebrew, Devanagari, Hangul syllables, CJK ideographs).
NON_LATIN_LETTERS = "".join(
    chr(c) for lo, hi in [(0x0430, 0x044F), (0x03B1, 0x03C9), (0x0627, 0x064A), (0x05D0, 0x05EA), (0x0905, 0x0939),
                          (0xAC00, 0xAC40), (0x4E00, 0x4E40)] for c in range(lo, hi + 1) if chr(c).isalpha())
NON_LATIN_WORD = st.text(st.sampled_from(NON_LATIN_LETTERS), min_size=2, max_size=8)


@FUZZ
@given(st.lists(NON_LATIN_WORD, min_size=1, max_size=8).map(" ".join),
       st.sampled_from(["", ".", "!", " 🔴", "\u200f"]))
def test_non_latin_sentences_are_unsupported_never_guessed(sentence, suffix):
    """Case: random words of non-Latin scripts (Cyrillic, Greek, Arabic, Hebrew, Devanagari,
    Hangul, CJK), with punctuation / emoji / RTL mark: always "unsupported", never a command."""
    res = parse_command(sentence + suffix)
    assert res.status == "unsupported" and res.commands == [], (sentence, res)


# --- the pick-and-place / stop / correction grammar -----------------------------------------

OBJECTS = st.sampled_from(["the red ball", "the cup", "it", "that one", "the the blue blue box", "the like green "
                           "bottle", "the cereal box on the top shelf", "the second mug from the left", "them"])
PLACE_VERB = st.sampled_from(["put", "place", "move", "drop", "set", "stack", "throw", "pick up"])
DEST_REL = st.sampled_from(["in", "into", "on", "onto", "on top of", "next to", "beside", "to the left of",
                            "right of", "in front of", "behind", "under", "to", ""])
NOISE = st.sampled_from(["", "um, ", "uh ", "robot, ", "please ", "no, ", "actually ", "[BLANK_AUDIO] ", "\u202e"])
TAIL = st.sampled_from(["", ".", "!", " please", " thanks", ", robot", " and then the cup", " instead"])
UTTERANCE = st.builds(lambda n, v, o, r, d, t: f"{n}{v} {o} {r} {d}{t}", NOISE, PLACE_VERB, OBJECTS, DEST_REL,
                      OBJECTS, TAIL)
CORRECTION = st.builds(lambda n, a, b, t: f"{n}{a}{b}{t}", NOISE,
                       st.sampled_from(["no, ", "not that one, ", "", "the wrong one. ", "I meant "]),
                       st.sampled_from(["the other one", "the blue one", "the one on the left", "the bigger one",
                                        "the other cup", "the one next to the plate", "stop", "never mind",
                                        "the mug", "put it in the box", ""]), TAIL)


@FUZZ
@given(st.one_of(UTTERANCE, CORRECTION))
def test_grammar_sentences_are_valid_and_deterministic(text):
    """Case: generated pick-and-place / correction / stop sentences with noise parse to a valid,
    deterministic result; a pick-and-place result always names a canonical destination relation."""
    res = command._parse(text)
    _check_valid(res)
    assert parse_command(text) == res


@FUZZ
@given(st.one_of(UTTERANCE, CORRECTION))
def test_fillers_and_stutters_are_idempotent(text):
    """Case: doubling every word ("the the red red ball") and adding fillers between words gives
    the same commands as the sentence itself (stutters and fillers never reach a target).  Only
    English sentences: with foreign script, extra filler words change the share of Latin letters
    and so the "unsupported" decision, by design."""
    res = parse_command(text)
    words = text.split(" ")
    stuttered = " ".join(w + " " + w if w.isalpha() and w.lower() not in ("no", "bye", "not") else w
                         for w in words)
    padded = " ".join(w + " um" if w.isalpha() else w for w in words)
    for variant in (stuttered, padded):
        other = parse_command(variant)
        assert [c.target for c in other.commands] == [c.target for c in res.commands], (text, variant)
        assert other.intent == res.intent


@FUZZ
@given(st.lists(st.one_of(UTTERANCE, CORRECTION, MIXED, st.text(ANY_CHAR, max_size=40)), max_size=12))
def test_dialogue_never_raises_and_stays_bounded(texts):
    """Case: any sequence of utterances (with reported targets between them) never raises, always
    gives one status line, and the exclusion list stays within its cap."""
    d = Dialogue(max_excluded=3)
    for i, text in enumerate(texts):
        up = d.hear(text)
        assert up.message and up.state in ("idle", "active", "stopped")
        assert (up.command is None) == (up.state != "active")
        d.report(_ref(i), up.generation)
        assert len(d.excluded_targets) <= 3
        mask = d.exclusion_mask([[0, 0, 10, 10], [100, 100, 120, 130]], None)
        assert mask.shape == (2,) and mask.dtype == bool


def _ref(i):
    from clip_perception.dialogue import TargetRef
    return TargetRef.of([10.0 * i, 0, 10.0 * i + 20, 20], None, "x")
