"""Teleoperation: hand retargeting and the generated Inspire URDF."""
