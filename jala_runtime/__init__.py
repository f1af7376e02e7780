"""The runtime core, in plain Python (no ROS): what happens between a camera frame and the arm and hand.

- ``chunk``: ``TimedChunk``, the one action-chunk type (absolute times on one clock, joint names, the stamp of
  the observation it was computed from), from ``predict`` to the drivers.
- ``observation``: assembles the newest frames and joint states into an ``Observation`` (staleness rules).
- ``scheduler``: pipelined inference: when the next chunk must be computed so that it takes over after
  ``execute_steps`` actions of the current one; never twice from the same frame.
- ``executor``: follows chunks on an arm and a hand: refusal rules (held, stale, from before a reset, malformed),
  the hold latch, the stall guard, the hand's waypoint schedule.
- ``loop``: the inference thread the policy node runs (the simulated evaluation drives the same pieces with the
  world's simulated clock).
- ``process``: child processes (the runner's nodes, franky-sim) that end with the process that started them.

The ROS nodes (``ros2_ws/src/jala_ros``) are thin shells over these classes; ``evaluation/`` runs them in the
simulated task world, so a simulated Completion Ratio tests the code path the robot runs.
"""
