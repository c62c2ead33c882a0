"""Tests for clip_perception.depth_files (the one depth-file loader of the CLI, replay and
evaluation) and its use by ``clip-perception detect --depth``."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from clip_perception import cli
from clip_perception.depth_files import DepthFileError, depth_from_array, load_depth_file

MM = np.array([[0, 500, 1234], [65535, 2000, 0]], np.uint16)
MM_M = np.array([[np.nan, 0.5, 1.234], [65.535, 2.0, np.nan]], np.float32)


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 1), (2, 3, 3)])
def test_png_millimetres_any_single_channel_shape(tmp_path, shape):
    """16-bit PNG in mm -> metres, 0 -> NaN, for (H, W), (H, W, 1) and equal-channel (H, W, 3) data."""
    raw = MM.reshape(2, 3, 1) if len(shape) == 3 else MM
    if len(shape) == 3 and shape[2] == 3:
        raw = np.repeat(raw, 3, axis=2)
    arr = depth_from_array(raw)
    np.testing.assert_allclose(arr, MM_M, rtol=1e-6)
    assert arr.dtype == np.float32 and arr.shape == (2, 3)
    f = tmp_path / "d.png"
    cv2.imwrite(str(f), MM)
    np.testing.assert_allclose(load_depth_file(f), MM_M, rtol=1e-6)
    np.testing.assert_allclose(load_depth_file(f, depth_scale=0.0001), MM_M * 0.1, rtol=1e-6)


def test_npy_float_metres_and_h_w_1(tmp_path):
    """Float .npy (H, W, 1) -> metres unchanged (0, < 0, NaN, Inf -> NaN); depth_scale multiplies
    floats only with scale_float=True; integer .npy is millimetres."""
    d = np.array([[1.5, 0.0, -1.0], [np.inf, 2.25, np.nan]], np.float32)[..., None]
    f = tmp_path / "d.npy"
    np.save(f, d)
    expected = np.array([[1.5, np.nan, np.nan], [np.nan, 2.25, np.nan]], np.float32)
    np.testing.assert_array_equal(load_depth_file(f, depth_scale=0.001), expected)
    np.testing.assert_array_equal(load_depth_file(f, 2.0, scale_float=True), expected * 2)
    np.save(f, MM.astype(np.int32))
    np.testing.assert_allclose(load_depth_file(f), MM_M, rtol=1e-6)


def test_refused_inputs_name_the_problem(tmp_path):
    """8-bit, differing channels, 4-D, unreadable -> DepthFileError (a ValueError) saying why."""
    with pytest.raises(DepthFileError, match="8-bit"):
        depth_from_array(np.ones((2, 2), np.uint8))
    with pytest.raises(DepthFileError, match="differing channels"):
        depth_from_array(np.stack([MM, MM + 1], axis=2))
    with pytest.raises(DepthFileError, match="single-channel"):
        depth_from_array(np.ones((1, 2, 2, 1), np.float32))
    with pytest.raises(DepthFileError, match="cannot read"):
        load_depth_file(tmp_path / "missing.png")
    assert issubclass(DepthFileError, ValueError)


def test_cli_load_depth_accepts_h_w_1_and_reports_errors(tmp_path):
    """cli.load_depth: (H, W, 1) float32 accepted (issue 12), two differing channels -> CliError."""
    f = tmp_path / "d.npy"
    np.save(f, np.full((4, 5, 1), 1.25, np.float32))
    np.testing.assert_array_equal(cli.load_depth(f), np.full((4, 5), 1.25, np.float32))
    np.save(f, np.zeros((4, 5, 2), np.float32) + np.arange(2, dtype=np.float32))
    with pytest.raises(cli.CliError, match="differing channels"):
        cli.load_depth(f)


def test_cli_detect_with_h_w_1_depth_gives_3d_positions(tmp_path, capsys):
    """CLI case: ``detect --depth d.npy`` with a (H, W, 1) float depth of a flat 0.8 m scene ->
    exit 0, detections whose 3D z is 0.8 m (1 mm); a (H, W, 2) file exits 2 before any model loads."""
    rgb = np.full((240, 320, 3), 128, np.uint8)
    rgb[80:160, 120:200] = (220, 20, 20)
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    depth = tmp_path / "depth.npy"
    np.save(depth, np.full((240, 320, 1), 0.8, np.float32))
    argv = ["detect", str(image), "--command", "pick up the red block", "--depth", str(depth),
            "--intrinsics", "300,300,159.5,119.5", "--pretrained", "none", "--device", "cpu",
            "--set", "warmup=false", "--set", "score_threshold=0.0", "--set", "color_prior_weight=1.0",
            "--top-k", "2", "--json"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    positions = [d["position"] for d in out["detections"] if d["position"] is not None]
    assert positions and all(abs(p[2] - 0.8) < 1e-3 for p in positions)
    np.save(depth, np.zeros((240, 320, 2), np.float32) + np.arange(2, dtype=np.float32))
    assert cli.main(argv) == 2
    assert "differing channels" in capsys.readouterr().err
