"""The managed (lifecycle) node over the real lifecycle services.

Each test builds its own ``rclpy.Context`` with ``ClipPerceptionNode`` (``autostart:=false``)
and a tester node that calls ``<ns>/clip_perception/change_state`` and ``get_state``
(``lifecycle_msgs/srv/ChangeState``, ``GetState``), publishes camera frames and collects the
outputs; a ``MultiThreadedExecutor`` spins both in a background thread and everything is shut
down in ``finally``.  ``ROS_DOMAIN_ID`` is per pytest process and discovery localhost-only
(conftest.py).  Encoders: ``fake_encoders.ColorTestEncoder`` (the red ball is the known answer),
wrapped by ``test_node.GateEncoder`` to hold an inference open; the missing-weights case builds a
real ``ClipEncoder`` (random ViT-B-32 on the CPU) once configure is given a good value.

No assertion is about timing: waits have generous timeouts and only guard against hangs.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import weakref

import pytest
import rclpy
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

import clip_perception.worker as worker_module
from clip_perception import messages
from clip_perception.msg import TargetDetectionArray
from clip_perception.node import ClipPerceptionNode

from fake_encoders import ColorTestEncoder
from test_node import (BALL_BOX, REPO, STAMP, WAIT, GateEncoder, _node_env, image_msg, iou, roi_box, scene,
                       stamp_plus, wait_for)

RELIABLE = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
LAUNCHER = REPO / "test" / "node_with_test_encoder.py"


class Managed:
    """The node (autostart false) + a tester with lifecycle clients, camera publisher and collector."""

    def __init__(self, encoder, **overrides):
        overrides.setdefault("autostart", False)
        overrides.setdefault("use_depth", False)
        overrides.setdefault("mode", "crop")
        overrides.setdefault("no_image_warn_s", 60.0)
        self.ns = f"/lc{uuid.uuid4().hex[:10]}"
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = self.tester = self.executor = self.thread = None
        self.lock = threading.Lock()
        self.detections: list = []
        try:
            self.node = ClipPerceptionNode(encoder=encoder, context=self.ctx, namespace=self.ns,
                                           parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
            self.tester = rclpy.create_node(f"lc_tester_{uuid.uuid4().hex[:6]}", context=self.ctx)
            base = f"{self.ns}/clip_perception"
            self.change = self.tester.create_client(ChangeState, f"{base}/change_state")
            self.get = self.tester.create_client(GetState, f"{base}/get_state")
            self.image_pub = self.tester.create_publisher(Image, f"{self.ns}/image", qos_profile_sensor_data)
            self.tester.create_subscription(TargetDetectionArray, f"{self.ns}/detections", self._collect, RELIABLE)
            self.executor = MultiThreadedExecutor(num_threads=8, context=self.ctx)
            self.executor.add_node(self.node)
            self.executor.add_node(self.tester)
            self.thread = threading.Thread(target=self.executor.spin, daemon=True)
            self.thread.start()
            assert self.change.wait_for_service(timeout_sec=WAIT) and self.get.wait_for_service(timeout_sec=WAIT)
        except BaseException:
            self.close()
            raise

    def _collect(self, msg) -> None:
        with self.lock:
            self.detections.append(msg)

    def stamps(self) -> set:
        with self.lock:
            return {messages.stamp_to_ns(m.header.stamp) for m in self.detections}

    def call_async(self, client, request):
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        return future, done

    def transition(self, transition_id: int) -> bool:
        future, done = self.call_async(self.change, ChangeState.Request(transition=Transition(id=transition_id)))
        assert done.wait(WAIT), "change_state timed out"
        return future.result().success

    def state(self) -> tuple:
        future, done = self.call_async(self.get, GetState.Request())
        assert done.wait(WAIT), "get_state timed out"
        s = future.result().current_state
        return s.id, s.label

    def result_for(self, stamp) -> TargetDetectionArray:
        """Publish the frame every 0.25 s (best effort may drop) until its result arrives."""
        want = messages.stamp_to_ns(stamp)
        msg = image_msg(scene(), stamp)
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            self.image_pub.publish(msg)
            t_next = time.monotonic() + 0.25
            while time.monotonic() < t_next:
                with self.lock:
                    found = [m for m in self.detections if messages.stamp_to_ns(m.header.stamp) == want]
                if found:
                    return found[0]
                time.sleep(0.02)
        raise AssertionError(f"no detections for stamp {want}")

    def close(self) -> None:
        try:
            if self.node is not None:
                self.node.stop()
            if self.executor is not None:
                self.executor.shutdown(timeout_sec=5.0)
            if self.thread is not None:
                self.thread.join(5.0)
            if self.node is not None:
                self.node.destroy_node()
            if self.tester is not None:
                self.tester.destroy_node()
        finally:
            rclpy.try_shutdown(context=self.ctx)


@pytest.mark.ros
@pytest.mark.timeout(180)
def test_lifecycle_transitions_over_services(monkeypatch):
    """autostart false -> unconfigured, nothing subscribed; configure -> inactive with a model;
    activate -> active, answers a frame; deactivate during an inference -> the transition
    waits for that frame and nothing is published after it (not even that frame), the camera
    topic loses its subscriber; activate again answers; cleanup -> unconfigured, the model
    freed (the Detector collected, cached CUDA memory released)."""
    released = []
    monkeypatch.setattr(worker_module, "release_cuda_cache", lambda: released.append(True))
    gate = GateEncoder(ColorTestEncoder())
    m = Managed(gate, command="pick up the red ball")
    try:
        assert m.state() == (State.PRIMARY_STATE_UNCONFIGURED, "unconfigured")
        assert m.node.detector is None and m.image_pub.get_subscription_count() == 0
        assert m.tester.count_publishers(f"{m.ns}/detections") == 0

        assert m.transition(Transition.TRANSITION_CONFIGURE)
        assert m.state() == (State.PRIMARY_STATE_INACTIVE, "inactive")
        assert m.node.detector is not None and m.node.detector.encoder is gate
        assert m.image_pub.get_subscription_count() == 0

        assert m.transition(Transition.TRANSITION_ACTIVATE)
        assert m.state() == (State.PRIMARY_STATE_ACTIVE, "active")
        first = m.result_for(STAMP)
        assert first.target == "red ball" and iou(roi_box(first.detections[0].roi), BALL_BOX) > 0.8

        time.sleep(0.5)  # the repeats of the first frame are drained: the next inference is the held frame's
        wait_for(lambda: not m.node.worker.busy, what="the worker to be idle")
        published_before = m.node.frames_processed
        gate.gate_on = True
        held = stamp_plus(STAMP, 1.0)
        m.image_pub.publish(image_msg(scene(), held))
        while not gate.entered.wait(0.25):  # best effort may drop it: publish until it is inferred
            m.image_pub.publish(image_msg(scene(), held))
        future, done = m.call_async(m.change, ChangeState.Request(
            transition=Transition(id=Transition.TRANSITION_DEACTIVATE)))
        assert not done.wait(0.5), "deactivate returned while the frame was still being inferred"
        gate.gate_on = False
        gate.release.set()
        assert done.wait(WAIT) and future.result().success
        seen_after = m.stamps()
        assert m.state() == (State.PRIMARY_STATE_INACTIVE, "inactive")
        wait_for(lambda: m.image_pub.get_subscription_count() == 0, what="the image subscription to go")
        for i in range(8):  # frames sent while inactive are not processed
            m.image_pub.publish(image_msg(scene(), stamp_plus(STAMP, 2.0 + i)))
            time.sleep(0.1)
        time.sleep(0.5)
        assert m.stamps() == seen_after
        assert messages.stamp_to_ns(held) not in m.stamps() and m.node.frames_processed == published_before

        assert m.transition(Transition.TRANSITION_ACTIVATE)
        again = m.result_for(stamp_plus(STAMP, 20.0))
        assert again.detections and iou(roi_box(again.detections[0].roi), BALL_BOX) > 0.8

        assert m.transition(Transition.TRANSITION_DEACTIVATE)
        detector = weakref.ref(m.node.detector)
        assert m.transition(Transition.TRANSITION_CLEANUP)
        assert m.state() == (State.PRIMARY_STATE_UNCONFIGURED, "unconfigured")
        gc.collect()
        assert m.node.detector is None and detector() is None and released
        assert m.transition(Transition.TRANSITION_CONFIGURE)  # configurable again
        assert m.state() == (State.PRIMARY_STATE_INACTIVE, "inactive")
    finally:
        gate.release.set()
        m.close()


@pytest.mark.ros
@pytest.mark.timeout(240)
def test_configure_with_missing_weights_fails_stays_unconfigured_and_can_be_retried(tmp_path):
    """pretrained:=<missing checkpoint> -> configure fails with the loader's message (naming
    the file), the node stays unconfigured; pretrained:=none -> configure succeeds (random
    ViT-B-32 ClipEncoder on the CPU) and the node is inactive."""
    missing = str(tmp_path / "missing_weights.pt")
    m = Managed(None, pretrained=missing, device="cpu", warmup=False)
    try:
        assert not m.transition(Transition.TRANSITION_CONFIGURE)
        assert m.state() == (State.PRIMARY_STATE_UNCONFIGURED, "unconfigured")
        assert m.node.detector is None
        assert missing in m.node.configure_error and "not found" in m.node.configure_error
        assert not m.transition(Transition.TRANSITION_ACTIVATE)  # not from unconfigured
        [res] = m.node.set_parameters([Parameter("pretrained", value="none")])
        assert res.successful, res.reason
        assert m.transition(Transition.TRANSITION_CONFIGURE)
        assert m.state() == (State.PRIMARY_STATE_INACTIVE, "inactive")
        assert type(m.node.detector.encoder).__name__ == "ClipEncoder" and m.node.configure_error == ""
    finally:
        m.close()


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_node_process_with_autostart_false_is_driven_over_services_and_exits_zero_on_sigint(tmp_path):
    """A node process (node_with_test_encoder.py: the product node, colour test encoder) with
    autostart:=false waits unconfigured (no image subscriber); configure + activate over the
    services -> it answers a frame; SIGINT while active -> exit code 0, no traceback."""
    ns = f"/lp{uuid.uuid4().hex[:8]}"
    env = _node_env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH", "")] if p])
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), "--ros-args", "-r", f"__ns:={ns}", "-p", "autostart:=false",
                             "-p", "use_depth:=false", "-p", "mode:=crop", "-p", "command:=pick up the red ball"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    tester = rclpy.create_node(f"lp_tester_{uuid.uuid4().hex[:6]}", context=ctx)
    executor = MultiThreadedExecutor(num_threads=2, context=ctx)
    thread = None
    got: list = []
    try:
        change = tester.create_client(ChangeState, f"{ns}/clip_perception/change_state")
        get = tester.create_client(GetState, f"{ns}/clip_perception/get_state")
        pub = tester.create_publisher(Image, f"{ns}/image", qos_profile_sensor_data)
        tester.create_subscription(TargetDetectionArray, f"{ns}/detections", got.append, RELIABLE)
        executor.add_node(tester)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()

        def call(client, request):
            assert client.wait_for_service(timeout_sec=90), f"no {client.srv_name} (rc {proc.poll()})"
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _f: done.set())
            assert done.wait(WAIT), f"{client.srv_name} timed out"
            return future.result()

        assert call(get, GetState.Request()).current_state.label == "unconfigured"
        assert pub.get_subscription_count() == 0
        for tid in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert call(change, ChangeState.Request(transition=Transition(id=tid))).success
        assert call(get, GetState.Request()).current_state.label == "active"
        wait_for(lambda: (pub.publish(image_msg(scene(), STAMP)), bool(got))[1], what="a detection")
        assert got[0].target == "red ball" and iou(roi_box(got[0].detections[0].roi), BALL_BOX) > 0.8
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in out + err, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        executor.shutdown(timeout_sec=5.0)
        tester.destroy_node()
        rclpy.try_shutdown(context=ctx)
        if thread is not None:
            thread.join(5.0)
