"""command.py: spoken-style command understanding (table of utterances with expected parses)."""

import json

import pytest

from clip_perception.command import (ACTIONS, MAX_COMMAND_CHARS, RELATION_KINDS, SPATIAL_KINDS, CommandParse,
                                     ParsedCommand, SpatialQualifier, parse_command, parse_object_phrase)


def C(action, target, noun=None, colors=(), attributes=(), spatial=None, relation=None, reference=None):
    """Expected command; spatial as (kind, ordinal)."""
    return dict(action=action, target=target, noun=noun if noun is not None else target.split()[-1],
                colors=list(colors), attributes=list(attributes), spatial=spatial, relation=relation,
                reference=reference)


NO = "no_command"
UNSUP = "unsupported"

# (case id, utterance, expected: status string or list of expected commands)
CASES = [
    # --- fillers, case, punctuation, artefacts ---
    ("fillers-um-uh", "um, pick up uh the red ball", [C("pick up", "red ball", colors=["red"])]),
    ("case-punct-space", " Pick up the RED ball!!! ", [C("pick up", "red ball", colors=["red"])]),
    ("artefact-silence-tag", "[silence] pick up the red ball", [C("pick up", "red ball", colors=["red"])]),
    ("artefact-inaudible-cough", "(inaudible) *cough* grab the mug [Music]", [C("grab", "mug")]),
    ("filler-like-commas", "find the, like, red ball", [C("find", "red ball", colors=["red"])]),
    ("filler-like-before-article", "pick up like the blue cup", [C("pick up", "blue cup", colors=["blue"])]),
    ("filler-you-know-please", "you know, grab the green block please", [C("grab", "green block",
                                                                           colors=["green"])]),
    ("filler-could-you-please", "Could you please get me the small wooden block?",
     [C("get", "small wooden block", attributes=["small", "wooden"])]),
    ("filler-okay-so-well", "okay so well, erm, point at the bottle", [C("point at", "bottle")]),
    ("filler-inside-words-plum", "pick up the plum", [C("pick up", "plum")]),
    ("filler-inside-words-umbrella", "find the umbrella", [C("find", "umbrella")]),
    ("filler-inside-words-bowl-likely", "um grab the likely red bowl",
     [C("grab", "likely red bowl", noun="bowl", colors=["red"])]),
    # --- wake words ---
    ("wake-robot-comma", "robot, hand me the cup on the left", [C("hand me", "cup", spatial=("left", 1))]),
    ("wake-hey-robot", "hey robot, bring me the yellow banana", [C("bring me", "yellow banana",
                                                                  colors=["yellow"])]),
    ("wake-ok-robot", "OK robot pick the cup up", [C("pick up", "cup")]),
    ("wake-trailing", "grab the mug, robot", [C("grab", "mug")]),
    ("wake-word-as-object", "pick up the toy robot", [C("pick up", "toy robot")]),
    # --- actions ---
    ("action-default-find", "the red and white mug", [C("find", "red and white mug", colors=["red", "white"])]),
    ("action-where-is", "where is the green bottle?", [C("find", "green bottle", colors=["green"])]),
    ("action-show-me", "show me the laptop", [C("show me", "laptop")]),
    ("action-point-to", "point to the plate", [C("point at", "plate")]),
    ("action-look-at", "look at the door", [C("look at", "door")]),
    ("action-touch", "touch the blue box", [C("touch", "blue box", colors=["blue"])]),
    ("action-push", "push the black cube", [C("push", "black cube", colors=["black"])]),
    ("action-go-to", "go to the chair", [C("go to", "chair")]),
    ("action-give-to-me", "give the orange cup to me", [C("give me", "orange cup", colors=["orange"])]),
    ("action-locate", "locate the scissors", [C("find", "scissors")]),
    # --- attributes ---
    ("attr-gray-synonym", "take the gray metal can", [C("take", "gray metal can", colors=["grey"],
                                                        attributes=["metal"])]),
    ("attr-light-shade", "grab the light blue plastic cup", [C("grab", "light blue plastic cup", colors=["blue"],
                                                               attributes=["light", "plastic"])]),
    ("attr-post-nominal-colour", "find the ball that is red", [C("find", "red ball", colors=["red"])]),
    ("attr-orange-noun", "pick up the orange", [C("pick up", "orange")]),
    ("attr-glass-noun", "grab the glass", [C("grab", "glass")]),
    ("attr-red-one", "grab the red one", [C("grab", "red object", noun="object", colors=["red"])]),
    ("attr-hyphen-colours", "grab the red-and-white mug", [C("grab", "red and white mug",
                                                              colors=["red", "white"])]),
    ("attr-of-phrase", "get the bottle of orange juice", [C("get", "bottle of orange juice", noun="bottle")]),
    # --- spatial qualifiers ---
    ("spatial-on-the-left", "the cup on the left", [C("find", "cup", spatial=("left", 1))]),
    ("spatial-ordinal-from-right", "grab the second bottle from the right", [C("grab", "bottle",
                                                                              spatial=("right", 2))]),
    ("spatial-third-from-right", "the third bottle from the right", [C("find", "bottle", spatial=("right", 3))]),
    ("spatial-second-from-left", "pick up the 2nd cup from the left", [C("pick up", "cup", spatial=("left", 2))]),
    ("spatial-leftmost", "the leftmost cup", [C("find", "cup", spatial=("left", 1))]),
    ("spatial-left-most-hyphen", "the left-most cup", [C("find", "cup", spatial=("left", 1))]),
    ("spatial-rightmost", "pick up the rightmost red block", [C("pick up", "red block", colors=["red"],
                                                                spatial=("right", 1))]),
    ("spatial-middle", "the cup in the middle", [C("find", "cup", spatial=("middle", 1))]),
    ("spatial-center", "grab the center bottle", [C("grab", "bottle", spatial=("middle", 1))]),
    ("spatial-top", "the box at the top", [C("find", "box", spatial=("top", 1))]),
    ("spatial-bottom-side", "the cup on the bottom side", [C("find", "cup", spatial=("bottom", 1))]),
    ("spatial-nearest", "bring me the nearest can", [C("bring me", "can", spatial=("nearest", 1))]),
    ("spatial-closest-to-me", "grab the cup closest to me", [C("grab", "cup", spatial=("nearest", 1))]),
    ("spatial-farthest", "find the farthest bottle", [C("find", "bottle", spatial=("farthest", 1))]),
    ("spatial-largest", "pick up the largest box", [C("pick up", "box", spatial=("largest", 1))]),
    ("spatial-biggest", "grab the biggest red ball", [C("grab", "red ball", colors=["red"],
                                                        spatial=("largest", 1))]),
    ("spatial-smallest", "pick up the smallest cube", [C("pick up", "cube", spatial=("smallest", 1))]),
    ("spatial-left-one", "the left one", [C("find", "object", spatial=("left", 1))]),
    ("spatial-second-default-left", "the second cup", [C("find", "cup", spatial=("left", 2))]),
    ("spatial-the-one-on-the-left", "the red ball, the one on the left", [C("find", "red ball", colors=["red"],
                                                                             spatial=("left", 1))]),
    ("spatial-what-is-on-the-left", "what's on the left?", [C("find", "object", spatial=("left", 1))]),
    # --- reference objects ---
    ("ref-next-to", "grab the cup next to the red plate", [C("grab", "cup", relation="next to",
                                                              reference="red plate")]),
    ("ref-left-of", "point at the block left of the bowl", [C("point at", "block", relation="left of",
                                                               reference="bowl")]),
    ("ref-to-the-right-of", "the cup to the right of the laptop", [C("find", "cup", relation="right of",
                                                                     reference="laptop")]),
    ("ref-on", "the ball on the plate", [C("find", "ball", relation="on", reference="plate")]),
    ("ref-on-top-of", "the cup on top of the box", [C("find", "cup", relation="on", reference="box")]),
    ("ref-near", "the mug near the laptop", [C("find", "mug", relation="near", reference="laptop")]),
    ("ref-in-front-of", "the can in front of the box", [C("find", "can", relation="in front of",
                                                          reference="box")]),
    ("ref-behind", "get the bottle behind the blue box", [C("get", "bottle", relation="behind",
                                                            reference="blue box")]),
    ("ref-above", "the lamp above the desk", [C("find", "lamp", relation="above", reference="desk")]),
    ("ref-below-under", "the shoe under the chair", [C("find", "shoe", relation="below", reference="chair")]),
    ("ref-in", "the ball in the bowl", [C("find", "ball", relation="in", reference="bowl")]),
    ("ref-colour-target-and-reference", "grab the red cup next to the blue plate",
     [C("grab", "red cup", colors=["red"], relation="next to", reference="blue plate")]),
    ("ref-near-me-is-nearest", "the cup near me", [C("find", "cup", spatial=("nearest", 1))]),
    # --- multiple commands ---
    ("multi-and-then", "pick up the red ball and then the blue cup",
     [C("pick up", "red ball", colors=["red"]), C("pick up", "blue cup", colors=["blue"])]),
    ("multi-comma-then", "grab the cup, then point at the bowl", [C("grab", "cup"), C("point at", "bowl")]),
    ("multi-after-that", "find the ball after that bring me the mug", [C("find", "ball"), C("bring me", "mug")]),
    ("multi-sentences-thank-you", "Pick up the ball. Thank you.", [C("pick up", "ball")]),
    ("multi-and-article", "pick up the bowl and the spoon", [C("pick up", "bowl"), C("pick up", "spoon")]),
    ("multi-pronoun-dropped", "pick up the umbrella and then drop it", [C("pick up", "umbrella")]),
    # --- no command ---
    ("empty", "", NO),
    ("spaces", "   ", NO),
    ("punct-only", "!", NO),
    ("period-only", ".", NO),
    ("blank-audio", "[BLANK_AUDIO]", NO),
    ("hallucination-thank-you", "Thank you.", NO),
    ("hallucination-thanks-for-watching", "Thanks for watching!", NO),
    ("hallucination-you", "you", NO),
    ("hallucination-bye", "Bye.", NO),
    ("fillers-only", "um uh hmm, okay", NO),
    ("pronoun-only", "pick it up", NO),
    ("control-word-stop", "Stop!", NO),
    ("reply-no", "No.", NO),
    ("numbers-only", "123", NO),
    # --- unsupported ---
    ("unsupported-spanish", "recoge la pelota roja", UNSUP),
    ("unsupported-chinese", "拿起红色的球", UNSUP),
]


def _as_dict(cmd: ParsedCommand) -> dict:
    d = cmd.to_dict()
    d["spatial"] = None if cmd.spatial is None else (cmd.spatial.kind, cmd.spatial.ordinal)
    return {k: d[k] for k in ("action", "target", "noun", "colors", "attributes", "spatial", "relation",
                              "reference")}


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse_table(text, expected):
    """Case: each spoken-style utterance of the table parses to the expected status and commands."""
    res = parse_command(text)
    assert isinstance(res, CommandParse)
    if isinstance(expected, str):
        assert res.status == expected, (res.status, res.reason, res.commands)
        assert res.commands == [] and res.first is None
        assert res.reason  # always says why
        return
    assert res.status == "ok", res.reason
    assert [_as_dict(c) for c in res.commands] == expected


def test_table_size_and_required_utterances():
    """Case: the table has >= 40 utterances and contains every utterance the issue names."""
    texts = {c[1] for c in CASES}
    assert len(CASES) >= 40
    required = ["um, pick up uh the red ball", " Pick up the RED ball!!! ", "[silence] pick up the red ball",
                "robot, hand me the cup on the left", "grab the second bottle from the right",
                "pick up the red ball and then the blue cup", "", "Thank you.", "[BLANK_AUDIO]", "   ", "!", "you",
                "the red and white mug", "pick up the plum", "find the umbrella",
                "grab the cup next to the red plate", "point at the block left of the bowl",
                "bring me the nearest can", "pick up the largest box", "the leftmost cup"]
    assert set(required) <= texts


def test_first_summary_and_to_dict():
    """Case: .first, summary()/str and to_dict() (JSON-serialisable) of a full parse."""
    res = parse_command("robot, grab the second red cup from the left next to the blue plate")
    cmd = res.first
    assert cmd is res.commands[0] and res.ok
    assert cmd.spatial == SpatialQualifier("left", 2)
    assert cmd.relation == "next to" and cmd.reference == "blue plate"
    assert str(cmd) == cmd.summary() == 'grab "red cup" (colours: red; 2nd from the left) next to "blue plate"'
    assert str(res) == res.summary() == cmd.summary()
    d = json.loads(json.dumps(res.to_dict()))
    assert d["status"] == "ok"
    assert d["commands"][0]["spatial"] == {"kind": "left", "ordinal": 2}
    assert str(SpatialQualifier("nearest")) == "nearest"
    assert str(SpatialQualifier("right", 3)) == "3rd from the right"
    assert "no_command" in str(parse_command(""))


def test_raw_keeps_the_clause():
    """Case: raw is the cleaned clause in original case; two commands keep their own clause text."""
    res = parse_command("[Music] Pick up the RED ball and then grab the Cup")
    assert [c.raw for c in res.commands] == ["Pick up the RED ball", "grab the Cup"]


def test_values_are_canonical():
    """Case: actions, spatial kinds and relations of the table all come from the documented sets."""
    actions = set(ACTIONS.values())
    for _, text, expected in CASES:
        for cmd in parse_command(text).commands:
            assert cmd.action in actions or cmd.action == "find"
            assert cmd.spatial is None or (cmd.spatial.kind in SPATIAL_KINDS and cmd.spatial.ordinal >= 1)
            assert cmd.relation is None or cmd.relation in RELATION_KINDS


def test_long_input_is_capped_and_reported():
    """Case: text longer than MAX_COMMAND_CHARS after cleaning is cut, and the reason says so."""
    res = parse_command("pick up the red ball " + "and then the cup " * 200)
    assert res.status == "ok"
    assert f"only the first {MAX_COMMAND_CHARS}" in res.reason
    assert res.first.target == "red ball"


def test_parse_object_phrase_for_reference():
    """Case: parse_object_phrase gives colours/noun of a reference phrase ('the red plate')."""
    ref = parse_object_phrase("the red plate")
    assert (ref.action, ref.target, ref.noun, ref.colors) == ("find", "red plate", "plate", ["red"])
    assert parse_object_phrase("").target == ""


def test_non_string_input():
    """Case: None and bytes are accepted (None -> no_command, UTF-8 bytes decoded)."""
    assert parse_command(None).status == "no_command"
    assert parse_command("grab the cup".encode()).first.target == "cup"
