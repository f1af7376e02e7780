"""Operator input sources (each implements ``teleop.operator.OperatorSource``):

- ``keyboard.KeyboardSource``: terminal keys -> small Cartesian steps of the wrist pose, hand open / close, clutch,
  episode buttons (a key sequence can be fed for tests);
- ``replay.ReplaySource`` / ``replay.record_samples``: a recorded ``.npz`` file of samples, played back in real
  time or one sample per read;
- ``expert.ExpertOperator``: the simulated world's scripted expert as an automatic operator (joint targets);
- ``spacemouse``, ``webxr``, ``avp``: the SpaceMouse, WebXR (vuer) and Apple Vision Pro devices.

Sources are imported from their modules (``from teleop.sources.keyboard import KeyboardSource``) so that one
device's optional dependencies are never needed by another.
"""
