"""JALA ROS 2 runtime nodes: camera, policy, arm, hand, supervisor, and the one-process simulated devices.

The nodes are thin rclpy wrappers; the logic that does not need ROS lives in plain modules (``core``,
``devices``) that import no ROS packages.
"""
