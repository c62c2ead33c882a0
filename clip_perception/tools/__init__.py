"""Tools that sit apart from the runtime: ``bench``, ``evaluate``, ``demo``, ``soak``, ``replay``
(rosbag2 / folder publisher) and the shared camera-feed publishing helpers.

The runtime modules of :mod:`clip_perception` (decode, proposals, encoder, ranking, pipeline,
node, ...) never import from here.
"""
