"""``clip-perception demo`` (tools/demo.py): the child processes it starts exist.

The full demo runs in ``test_e2e.py`` (simulated camera); the ``--data`` path (replay of a
folder or bag) starts ``python -m <module>`` children, which must be importable modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from clip_perception.tools import demo


def _module_of(argv: list) -> str:
    assert argv[1] == "-m"
    return argv[2]


def test_every_child_module_of_the_demo_is_importable(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    replay, _ = demo._camera_argv(None, folder, "/ns", "red ball")
    node = demo._node_argv("/ns", "ViT-B-32", "none", True)
    for argv in (replay, node):
        module = _module_of(argv)
        assert importlib.util.find_spec(module) is not None, module
    assert _module_of(replay) == "clip_perception.tools.replay" and str(folder) in replay
    assert Path(replay[3]) == folder
