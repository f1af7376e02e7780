"""Teleoperation (no ROS): an operator drives the FR3 + Inspire hand through the same device path as the policy.

- ``operator``: what every operator input source gives (``OperatorSample``: a wrist pose target and/or direct joint
  targets, hand keypoints and/or hand targets, the clutch, episode buttons) and the ``OperatorSource`` interface;
- ``sources/``: keyboard, replay of a recorded file, the simulated world's scripted expert (an automatic operator),
  SpaceMouse, Apple Vision Pro (avp-stream) and WebXR (vuer, paired sessions only);
- ``retarget``: human finger keypoints -> the RH56's six angles (dex-retargeting, on a URDF of the project's own
  hand model);
- ``arm_ik``: wrist pose -> FR3 joint targets (mink), workspace limits, scaling;
- ``session``: sample -> ``TimedChunk`` commands with the clutch and the deadman (operator stream stopped -> hold).
"""
