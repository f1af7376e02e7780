"""JALA bringup: the node graph (``graph``), the DDS environment (``ros_env``), launch helpers (``launch_support``)
and the project runner (``run``)."""
