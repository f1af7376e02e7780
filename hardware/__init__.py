"""Device drivers (FR3 arm, Inspire hand, L515 camera), their emulators/simulators, and the device interfaces.

Nothing in this package imports ROS: the ROS 2 nodes in ``ros2_ws/`` wrap these classes.
"""
