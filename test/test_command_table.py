"""command.py grammar table (issue 13): pick-and-place in every relation form, stop words, corrections,
pronouns, fillers / stutters / location qualifiers, and non-commands, with the expected parse.

Each row is (utterance, expected).  ``expected`` is built by the helpers below and names the
status, the intent, and the fields of the first action (``CommandParse.actions[0]``) or the
correction that must hold; fields a row does not name are not checked for that row.
"""

import json

import pytest

from clip_perception.command import DESTINATION_RELATION_KINDS, parse_command

NO, OK = "no_command", "ok"


def P(pick, rel, dest, cur=False, **first):
    """Pick-and-place: pick ``pick`` (``""`` when it is the current target), place ``rel`` ``dest``."""
    first.update(action="place", target=pick, dest=dest, rel=rel, refers=cur)
    return dict(status=NO if cur else OK, intent="pick_place", first=first)


def F(target, action="find", **first):
    """A one-object command (intent find) whose first action has this target."""
    first.update(action=action, target=target, refers=False)
    return dict(status=OK, intent="find", first=first)


def PRON(action):
    """An action on the current target ("pick it up")."""
    return dict(status=NO, intent="find", first=dict(action=action, target="", refers=True), reason="pronoun")


STOP = dict(status=NO, intent="stop", reason="stop the current command")


def OTHER(noun=None, action=None, phrase=None):
    """Correction 'other': exclude the current target; ``noun`` when "the other X" names one."""
    return dict(status=NO, intent="correction",
                correction=dict(kind="other", exclude=True, noun_given=noun is not None,
                                phrase=phrase if phrase is not None else noun, action=action))


def REFINE(target, exclude=False, action="find", **first):
    """Correction 'refine': stand-alone reading ``target`` (e.g. "blue object")."""
    first.update(action=action, target=target)
    return dict(status=OK, intent="correction", first=first,
                correction=dict(kind="refine", exclude=exclude, noun_given=False))


def NEW(target, action="find", cur=False, **first):
    """Correction 'new': a new command."""
    first.update(action=action, target=target, refers=cur)
    return dict(status=NO if cur else OK, intent="correction", first=first, correction=dict(kind="new"))


def NONE(reason):
    """No command, intent none, with this text in the reason."""
    return dict(status=NO, intent="none", reason=reason)


UNSUP = dict(status="unsupported", intent="none", reason="English")
CTRL = NONE("control word")

TABLE = [
    # --- pick-and-place: every relation form ---
    ("put the apple in the bowl", P("apple", "in", "bowl")),
    ("put the apple into the bowl", P("apple", "in", "bowl")),
    ("put the spoon inside the cup", P("spoon", "in", "cup")),
    ("throw the paper in the bin", P("paper", "in", "bin")),
    ("drop it into the bin", P("", "in", "bin", cur=True)),
    ("place the red block on the green block", P("red block", "on", "green block", colors=["red"],
                                                 dest_colors=["green"])),
    ("place the red block onto the green block", P("red block", "on", "green block")),
    ("move the red block onto the green block", P("red block", "on", "green block")),
    ("stack the red block on top of the blue block", P("red block", "on", "blue block")),
    ("put the small wooden block on top of the large box", P("small wooden block", "on", "large box",
                                                             attributes=["small", "wooden"])),
    ("set the cup down on the tray", P("cup", "on", "tray")),
    ("put the box on the top shelf", P("box", "on", "shelf", dest_spatial=("top", 1))),
    ("set the mug next to the plate", P("mug", "next_to", "plate")),
    ("drop the ball beside the box", P("ball", "next_to", "box")),
    ("move the cup near the plate", P("cup", "next_to", "plate")),
    ("put the mug by the kettle", P("mug", "next_to", "kettle")),
    ("put the cup down next to the plate", P("cup", "next_to", "plate")),
    ("put down the cup next to the plate", P("cup", "next_to", "plate")),
    ("put the cup to the left of the plate", P("cup", "left_of", "plate")),
    ("put the cup left of the plate", P("cup", "left_of", "plate")),
    ("put the cup on the left of the plate", P("cup", "left_of", "plate")),
    ("move it to the left of the plate", P("", "left_of", "plate", cur=True)),
    ("move the bottle to the right of the bowl", P("bottle", "right_of", "bowl")),
    ("put the bottle right of the bowl", P("bottle", "right_of", "bowl")),
    ("place the can in front of the laptop", P("can", "in_front_of", "laptop")),
    ("put the can behind the laptop", P("can", "behind", "laptop")),
    ("place the cup in back of the box", P("cup", "behind", "box")),
    # --- pick-and-place: two clauses, pronouns, noise ---
    ("pick up the banana and put it in the bowl", P("banana", "in", "bowl")),
    ("pick up the banana and then put it on the plate", P("banana", "on", "plate")),
    ("grab the red cup and place it next to the blue plate", P("red cup", "next_to", "blue plate")),
    ("take the sponge and put it in the sink", P("sponge", "in", "sink")),
    ("get the mug, put it on the shelf", P("mug", "on", "shelf")),
    ("put it in the box", P("", "in", "box", cur=True)),
    ("place that on the plate", P("", "on", "plate", cur=True)),
    ("put this one next to the mug", P("", "next_to", "mug", cur=True)),
    ("put that one behind the bottle", P("", "behind", "bottle", cur=True)),
    ("put them in the basket", P("", "in", "basket", cur=True)),
    ("um, put the uh red ball in the the bowl please", P("red ball", "in", "bowl", colors=["red"])),
    ("robot, put the green apple on the plate", P("green apple", "on", "plate")),
    ("could you put the yellow banana next to the red apple", P("yellow banana", "next_to", "red apple")),
    ("put the cup on the left in the bowl", P("cup", "in", "bowl", spatial=("left", 1))),
    ("put the apple in the bowl on the right", P("apple", "in", "bowl", dest_spatial=("right", 1))),
    ("put the apple in the bowl and then put the banana on the plate", P("apple", "in", "bowl")),
    ("Put the apple in the bowl.", P("apple", "in", "bowl")),
    ("place the mug on the tray, thanks", P("mug", "on", "tray")),
    ("hey robot, drop the cube in the box", P("cube", "in", "box")),
    ("put the like blue cup in the sink", P("blue cup", "in", "sink")),
    ("lay the book on the desk", P("book", "on", "desk")),
    ("toss the can into the bin", P("can", "in", "bin")),
    ("put the bottle of water in the fridge", P("bottle of water", "in", "fridge")),
    ("put it back in the box", P("", "in", "box", cur=True)),
    ("set it down next to the bowl", P("", "next_to", "bowl", cur=True)),
    # --- pick-and-place that is not understood: a reason, never a guess ---
    ("put the ball under the table", NONE("'under' is not a place relation")),
    ("put the ball above the box", NONE("'above' is not a place relation")),
    ("move the cup to the plate", NONE("'to' is not a place relation")),
    ("put the apple", NONE("needs a destination")),
    ("stack the blocks", NONE("needs a destination")),
    ("put", NONE("needs a destination")),
    ("move", NONE("needs a destination")),
    ("put it on it", NONE("destination is not an object in view")),
    ("put the apple in front of me", NONE("destination is not an object in view")),
    ("put the cup on the left", NONE("needs a destination")),
    # --- still actions of their own ---
    ("put it down", PRON("drop")),
    ("set the cup down", F("cup", "drop")),
    ("drop the ball", F("ball", "drop")),
    ("move to the chair", F("chair", "move to")),
    # --- stop ---
    ("stop", STOP), ("Stop!", STOP), ("stop.", STOP), ("cancel", STOP), ("Cancel.", STOP), ("abort", STOP),
    ("never mind", STOP), ("nevermind", STOP), ("forget it", STOP), ("forget about it", STOP),
    ("stop looking", STOP), ("Stop looking!", STOP), ("stop looking for the ball", STOP), ("that's all", STOP),
    ("That's all, thanks.", STOP), ("halt", STOP), ("Halt!", STOP), ("please stop", STOP), ("stop please", STOP),
    ("okay stop, thanks", STOP), ("no, stop", STOP), ("stop, stop!", STOP), ("robot, stop", STOP),
    ("cancel that", STOP), ("never mind, forget it", STOP), ("stop it", STOP), ("um, stop", STOP),
    ("abort, please", STOP), ("Never mind.", STOP), ("forget it, thank you", STOP),
    # --- control words that are not stop (ignored as before) ---
    ("wait", CTRL), ("pause", CTRL), ("hold on", CTRL),
    # --- corrections: other ---
    ("no, the other one", OTHER()), ("No, the other one.", OTHER()), ("not that one", OTHER()),
    ("not this one", OTHER()), ("the other one", OTHER()), ("another one", OTHER()), ("a different one", OTHER()),
    ("the wrong one", OTHER()), ("that's wrong", OTHER()), ("no, not that one", OTHER()),
    ("um, no, the other one please", OTHER()), ("not that one.", OTHER()),
    ("the other cup", OTHER("cup")), ("no, the other bottle", OTHER("bottle")),
    ("grab the other one", OTHER(action="grab")),
    ("pick up the other red ball", OTHER("red ball", action="pick up")),
    ("the other blue one", OTHER(phrase="blue object")),
    # --- corrections: refine ---
    ("the blue one", REFINE("blue object", colors=["blue"])),
    ("the red one", REFINE("red object", colors=["red"])),
    ("the one on the left", REFINE("object", spatial=("left", 1))),
    ("the one on the right", REFINE("object", spatial=("right", 1))),
    ("the left one", REFINE("object", spatial=("left", 1))),
    ("the bigger one", REFINE("object", spatial=("largest", 1))),
    ("the smaller one", REFINE("object", spatial=("smallest", 1))),
    ("the one next to the plate", REFINE("object", relation="next to", reference="plate")),
    ("the one behind the box", REFINE("object", relation="behind", reference="box")),
    ("not that one, the blue one", REFINE("blue object", exclude=True, colors=["blue"])),
    ("no, the green one", REFINE("green object", colors=["green"])),
    ("the second one from the left", REFINE("object", spatial=("left", 2))),
    ("the nearest one", REFINE("object", spatial=("nearest", 1))),
    ("grab the blue one", REFINE("blue object", action="grab")),
    ("uh, the the big one", REFINE("big object", attributes=["big"])),
    # --- corrections: new ---
    ("actually the green cup", NEW("green cup", colors=["green"])),
    ("actually, grab the green cup", NEW("green cup", "grab")),
    ("I meant the mug", NEW("mug")),
    ("I mean the mug", NEW("mug")),
    ("I mean, grab the mug", NEW("mug", "grab")),
    ("no, I meant the blue mug", NEW("blue mug")),
    ("sorry, the bottle", NEW("bottle")),
    ("the mug instead", NEW("mug")),
    ("no, the red ball", NEW("red ball")),
    ("actually put it in the bowl", NEW("", "place", cur=True, dest="bowl", rel="in")),
    ("oops, I meant the cup on the left", NEW("cup", spatial=("left", 1))),
    # --- pronouns in action commands ---
    ("pick it up", PRON("pick up")), ("grab it", PRON("grab")), ("grab that one", PRON("grab")),
    ("pick that up", PRON("pick up")), ("push it", PRON("push")), ("drop it", PRON("drop")),
    ("pick up this one", PRON("pick up")), ("pick it up please", PRON("pick up")),
    ("bring it to me", PRON("bring me")),
    # --- fillers, stutters, location qualifiers ---
    ("could you hand me the like green bottle", F("green bottle", "hand me", colors=["green"])),
    ("grab the cereal box on the top shelf", F("cereal box", "grab", noun="box", location="top shelf",
                                               spatial=("top", 1))),
    ("Pick up the the red red ball.", F("red ball", "pick up", colors=["red"])),
    ("uh, find the, you know, blue cup", F("blue cup", colors=["blue"])),
    ("pick up the kind of red ball", F("red ball", "pick up")),
    ("grab the sort of small box", F("small box", "grab", attributes=["small"])),
    ("grab the, I mean, the red cup", F("red cup", "grab")),
    ("get the bottle from the bottom shelf", F("bottle", "get", location="bottom shelf", spatial=("bottom", 1))),
    ("take the box on the second shelf", F("box", "take", location="second shelf", spatial=None)),
    ("pick up the mug on the top shelf of the cabinet", F("mug", "pick up", location="top shelf of cabinet")),
    ("find the red, red ball", F("red ball")),
    ("um um pick up the ball", F("ball", "pick up")),
    ("er, grab the uh the mug", F("mug", "grab")),
    ("hmm, I think, like, get the the bowl", F("bowl", "get")),
    ("grab the mug mug", F("mug", "grab")),
    ("grab the cup on the table", F("cup", "grab", relation="on", reference="table", location=None)),
    # --- as before ---
    ("pick up the umbrella and then drop it", F("umbrella", "pick up")),
    ("pick up the red ball and then the blue cup", F("red ball", "pick up")),
    ("find the cup then put the ball in the bowl", F("cup")),
    ("find the bigger cup", F("cup", spatial=("largest", 1))),
    ("grab the smaller bottle", F("bottle", "grab", spatial=("smallest", 1))),
    ("the cup closer to the plate", F("cup", relation="near", reference="plate")),
    ("find the cup next to the plate", F("cup", relation="next to", reference="plate")),
    ("the ball in the bowl", F("ball", relation="in", reference="bowl")),
    # --- non-commands ---
    ("", NONE("empty input")), ("Thank you.", NONE("alone is not a command")),
    ("[BLANK_AUDIO]", NONE("artefacts")), ("No.", NONE("alone is not a command")),
    ("yes", NONE("alone is not a command")), ("what", NONE("alone is not a command")),
    ("not the red one", NONE("negated object")), ("that one", NONE("pronoun")), ("it", NONE("pronoun")),
    ("that", NONE("pronoun")), ("um", NONE("no object named")), ("hmm, okay", NONE("no object named")),
    ("123", NONE("only numbers")), ("recoge la pelota roja", UNSUP), ("拿起红色的球", UNSUP),
]


def _project(res) -> dict:
    out = dict(status=res.status, intent=res.intent, reason=res.reason)
    if res.actions:
        a = res.actions[0]
        out["first"] = dict(action=a.action, target=a.target, noun=a.noun, colors=a.colors, attributes=a.attributes,
                            spatial=None if a.spatial is None else (a.spatial.kind, a.spatial.ordinal),
                            relation=a.relation, reference=a.reference, location=a.location,
                            refers=a.refers_to_current, rel=a.destination_relation,
                            dest=None if a.destination is None else a.destination.target,
                            dest_colors=None if a.destination is None else a.destination.colors,
                            dest_spatial=None if a.destination is None or a.destination.spatial is None
                            else (a.destination.spatial.kind, a.destination.spatial.ordinal))
    if res.correction is not None:
        c = res.correction
        out["correction"] = dict(kind=c.kind, exclude=c.exclude_current, noun_given=c.noun_given,
                                 phrase=None if c.phrase is None else c.phrase.target, action=c.action)
    return out


@pytest.mark.parametrize("text,expected", TABLE, ids=[f"{i:03d}-{t[:40]}" for i, (t, _) in enumerate(TABLE)])
def test_grammar_table(text, expected):
    """Case: each utterance of the table gives the expected status, intent, first action / correction."""
    res = parse_command(text)
    got = _project(res)
    assert (got["status"], got["intent"]) == (expected["status"], expected["intent"]), got
    if "reason" in expected:
        assert expected["reason"] in res.reason, res.reason
    for key in ("first", "correction"):
        for field, value in expected.get(key, {}).items():
            assert got[key][field] == value, (key, field, got.get(key))
    if res.status == OK:
        assert res.commands and res.commands[0] is res.actions[0] and res.commands[0].target
    else:
        assert res.commands == [] and res.reason
    json.dumps(res.to_dict())


def test_table_covers_the_issue():
    """Case: >= 150 rows; every destination relation, intent and correction kind occurs."""
    assert len(TABLE) >= 150
    assert len({t for t, _ in TABLE}) == len(TABLE)  # no duplicate rows
    rels = {e["first"]["rel"] for _, e in TABLE if e["intent"] == "pick_place"}
    assert rels == set(DESTINATION_RELATION_KINDS)
    assert {e["intent"] for _, e in TABLE} == {"find", "pick_place", "stop", "correction", "none"}
    assert {e["correction"]["kind"] for _, e in TABLE if "correction" in e} == {"other", "refine", "new"}


def test_pick_place_fields_and_summary():
    """Case: the pick part is a full object phrase, the destination another, with its own attributes."""
    res = parse_command("could you put the second red cup from the left on top of the blue plate, please")
    cmd = res.first
    assert (cmd.action, cmd.target, cmd.colors, cmd.spatial.kind, cmd.spatial.ordinal) == (
        "place", "red cup", ["red"], "left", 2)
    assert cmd.relation is None and cmd.reference is None  # the destination is not a reference relation
    assert (cmd.destination.target, cmd.destination.colors, cmd.destination_relation) == ("blue plate", ["blue"], "on")
    assert cmd.is_pick_place and res.intent == "pick_place"
    assert cmd.summary() == 'place "red cup" (colours: red; 2nd from the left) on "blue plate" (colours: blue)'
    d = res.to_dict()["commands"][0]
    assert d["destination"]["target"] == "blue plate" and d["destination_relation"] == "on"


def test_two_clause_pick_place_keeps_the_whole_span():
    """Case: "pick up X and put it in Y" is one command whose raw text spans both clauses."""
    res = parse_command("Pick up the banana and put it in the bowl")
    assert len(res.commands) == 1 and len(res.actions) == 1
    assert res.first.raw == "Pick up the banana ... put it in the bowl"
