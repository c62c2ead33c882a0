"""dialogue.py: conversation state (stop, corrections, pronouns), exclusion across frames by position."""

import threading

import numpy as np
import pytest

from clip_perception.dialogue import (Dialogue, TargetRef, excluded, match_targets, refine)
from clip_perception.command import parse_command

BALL_A = TargetRef.of([100, 100, 140, 140], [0.10, 0.0, 0.50], "red ball")
BALL_B = TargetRef.of([300, 100, 340, 140], [0.30, 0.0, 0.50], "red ball")
BOXES = np.array([[300, 100, 340, 140], [102, 101, 142, 141]], np.float32)  # B, then A moved by (2, 1) px


def test_find_then_stop_then_new_command():
    """Case: idle -> active -> stopped (no command, status 'stopped') -> active again."""
    d = Dialogue()
    assert d.state == "idle" and d.snapshot().command is None
    up = d.hear("pick up the red ball")
    assert (up.accepted, up.kind, up.state, up.message, up.target) == (True, "find", "active", "looking for: red ball",
                                                                       "red ball")
    d.report(BALL_A, up.generation)
    up = d.hear("Stop!")
    assert (up.accepted, up.kind, up.state, up.message, up.command) == (True, "stop", "stopped", "stopped", None)
    snap = d.snapshot()
    assert snap.command is None and snap.state == "stopped" and snap.current is None and snap.generation == 2
    up = d.hear("um")
    assert not up.accepted and up.message.startswith("ignored: no command (um)") and up.message.endswith("; stopped")
    up = d.hear("find the cup")
    assert up.accepted and up.state == "active" and d.snapshot().command.target == "cup"


@pytest.mark.parametrize("word", ["cancel", "never mind", "forget it", "stop looking", "that's all", "halt", "abort"])
def test_every_stop_word_clears_the_command(word):
    d = Dialogue()
    d.hear("grab the mug")
    up = d.hear(word)
    assert up.stopped and d.snapshot().command is None


def test_noise_keeps_the_command():
    """Case: fillers / artefacts are ignored and the current command kept, as before."""
    d = Dialogue()
    d.hear("pick up the red ball and then the blue cup")
    for text in ["", "Thank you.", "[BLANK_AUDIO]", "wait"]:
        up = d.hear(text)
        assert not up.accepted and "still looking for: red ball" in up.message and up.target == "red ball"
    assert d.later == ["blue cup"]


def test_pronoun_needs_a_current_target():
    """Case: "put it in the box" without a command / before anything was found -> ignored with a reason;
    after a report -> pick = the current command's object (current target kept), destination = box."""
    d = Dialogue()
    up = d.hear("put it in the box")
    assert not up.accepted and "no current command" in up.message
    d.hear("find the red ball")
    up = d.hear("put it in the box")
    assert not up.accepted and "no red ball has been found yet" in up.message
    gen = d.snapshot().generation
    assert d.observe(gen, True, "found red ball", BALL_A) == "found red ball"
    up = d.hear("put it in the box")
    cmd = up.command
    assert (up.accepted, up.kind) == (True, "pronoun")
    assert (cmd.action, cmd.target, cmd.colors, cmd.refers_to_current) == ("place", "red ball", ["red"], True)
    assert (cmd.destination.target, cmd.destination_relation) == ("box", "in")
    assert up.message == "looking for: red ball (the current target); place: in box"
    assert d.current_target == BALL_A  # the same object stays the target


def test_pick_it_up_keeps_the_object_and_changes_the_action():
    d = Dialogue()
    d.hear("find the blue cup")
    d.report(BALL_A)
    up = d.hear("pick it up")
    assert (up.command.action, up.command.target, up.command.destination) == ("pick up", "blue cup", None)


def test_not_that_one_excludes_the_current_target_across_frames():
    """Case: "no, the other one" excludes the target by position: the next frame's box of the same
    object (moved 2 px) is masked, the other ball is not; it stays excluded on later frames."""
    d = Dialogue()
    d.hear("find the red ball")
    d.report(BALL_A)
    up = d.hear("no, the other one")
    assert (up.accepted, up.kind, up.target) == (True, "other", "red ball")
    assert up.message == "looking for: red ball (not that one)"
    assert d.excluded_targets == (BALL_A,) and d.current_target is None
    for shift in range(5):  # five frames, the excluded ball drifting right by 2 px a frame
        boxes = BOXES + np.array([[0, 0, 0, 0], [2 * shift, 0, 2 * shift, 0]], np.float32)
        assert d.exclusion_mask(boxes, None).tolist() == [False, True]
    assert d.excluded_targets[0].box == (110.0, 101.0, 150.0, 141.0)  # tracked to the last frame's box
    d.report(BALL_B)
    up = d.hear("not that one")  # the second ball too
    assert len(d.excluded_targets) == 2 and up.message == "looking for: red ball (not the 2 excluded)"
    d.hear("find the cup")  # a new command clears the exclusions
    assert d.excluded_targets == ()


def test_other_needs_a_target():
    d = Dialogue()
    assert not d.hear("the other one").accepted  # nothing to correct
    d.hear("find the red ball")
    up = d.hear("not that one")
    assert not up.accepted and "no current target to exclude" in up.message
    up = Dialogue().hear("the other cup")  # no command yet: the named noun is a new command
    assert up.accepted and up.target == "cup"


def test_refine_keeps_the_noun():
    """Case: "the blue one" / "the one on the left" / "the bigger one" / "the one next to the plate"
    -> the current command's noun with the new attribute / qualifier / relation."""
    d = Dialogue()
    d.hear("grab the small red cup")
    up = d.hear("the blue one")
    assert (up.kind, up.command.action, up.command.target, up.command.colors, up.command.noun) == (
        "refine", "grab", "small blue cup", ["blue"], "cup")
    up = d.hear("the one on the left")
    assert (up.command.target, up.command.spatial.kind) == ("small blue cup", "left")
    up = d.hear("the bigger one")
    assert up.command.spatial.kind == "largest"
    up = d.hear("the one next to the plate")
    assert (up.command.relation, up.command.reference, up.command.target) == ("next to", "plate", "small blue cup")
    d.report(BALL_A)
    up = d.hear("not that one, the green one")
    assert up.command.target == "small green cup" and d.excluded_targets == (BALL_A,)
    assert Dialogue().hear("the blue one").target == "blue object"  # no command: the stand-alone reading


def test_new_correction_replaces_the_command():
    d = Dialogue()
    d.hear("find the red cup")
    d.report(BALL_A)
    up = d.hear("actually the green cup")
    assert (up.kind, up.target) == ("new", "green cup") and d.current_target is None
    up = d.hear("I meant the mug")
    assert (up.kind, up.target) == ("new", "mug")


def test_refine_target_text():
    base = parse_command("get the red and white mug").first
    blue = parse_command("the blue one").correction.phrase
    assert refine(base, blue).target == "blue mug"
    left = parse_command("the one on the left").correction.phrase
    assert refine(base, left).target == "red and white mug"  # colours kept: target text unchanged


def test_match_targets_iou_and_3d():
    """Case: IoU decides without positions; with both positions the 3D distance decides."""
    boxes = np.array([[100, 100, 140, 140], [120, 100, 160, 140], [0, 0, 10, 10]], np.float32)
    # IoU with BALL_A: 1.0, 20*40 / (2*1600 - 800) = 1/3, 0
    assert match_targets(boxes, None, [BALL_A]).tolist() == [0, -1, -1]
    assert match_targets(boxes, None, [BALL_A], iou_threshold=0.3).tolist() == [0, 0, -1]
    pos = np.array([[0.30, 0.0, 0.50], [0.11, 0.0, 0.52], [np.nan] * 3], np.float32)
    # row 0: same box but 0.2 m away -> not A; row 1: 2.2 cm away -> A; row 2: no depth, IoU 0 -> none
    assert match_targets(boxes, pos, [BALL_A]).tolist() == [-1, 0, -1]
    assert excluded(boxes, pos, [BALL_A, BALL_B]).tolist() == [True, True, False]
    assert match_targets(np.zeros((0, 4), np.float32), None, [BALL_A]).shape == (0,)
    assert excluded(boxes, None, []).tolist() == [False, False, False]
    with pytest.raises(ValueError):
        TargetRef.of([1, 2, 3])


def test_observe_reports_changes_only_and_drops_stale_frames():
    d = Dialogue()
    gen = d.hear("pick up the red ball").generation
    assert d.observe(gen, True, "found red ball") == "found red ball"
    assert d.observe(gen, True, "found red ball") is None
    assert d.observe(gen, False, "no red ball") == "no red ball"
    d.report(BALL_B, gen - 1)  # stale frame
    assert d.current_target is None


def test_thread_safety_under_concurrent_hear_and_frames():
    """Case: utterances and frame reports from several threads leave a consistent, bounded state."""
    d = Dialogue(max_excluded=4)
    texts = ["find the red ball", "no, the other one", "the blue one", "stop", "put it in the box"] * 40
    errors = []

    def talk():
        try:
            for t in texts:
                d.hear(t)
        except Exception as exc:  # pragma: no cover - the assert below reports it
            errors.append(exc)

    def frames():
        try:
            for i in range(400):
                d.report(TargetRef.of([i, 0, i + 30, 30]))
                d.exclusion_mask(BOXES, None)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=talk), threading.Thread(target=frames), threading.Thread(target=talk)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(d.excluded_targets) <= 4
    assert d.snapshot().generation >= 1
