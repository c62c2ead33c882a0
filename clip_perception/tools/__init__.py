"""Tools that sit apart from the runtime.

``bench`` (+ ``bench_frames``, ``bench_modes``, ``bench_peers``, ``bench_age``, ``bench_report``),
``evaluate`` (+ ``evaluate_cases``, ``evaluate_dialogue``, ``evaluate_report``), ``demo``, ``soak``,
``replay`` (rosbag2 / folder publisher; ROS-free loaders in ``replay_io``), ``feed`` (the one
camera-feed publisher) and ``executables`` (the single-threaded main of the publishers).

The runtime modules of :mod:`clip_perception` (decode, proposals, encoder, ranking, pipeline,
node, ...) never import from here (``test/test_package_shape.py``).
"""
