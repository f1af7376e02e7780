"""Bring up the JALA runtime for the wipe_board task.

    ros2 launch jala_bringup wipe_board.launch.py checkpoint:=/path/to/ckpt              # simulation
    ros2 launch jala_bringup wipe_board.launch.py sim:=false robot_ip:=172.16.0.2 \
        hand_transport:=rtu hand_serial_port:=/dev/ttyUSB0 checkpoint:=/path/to/ckpt  # real robot

Two cameras (front, side): the checkpoint must take two views.
The nodes and their parameters come from jala_bringup.graph (shared with python -m jala_bringup.run).
"""
from jala_bringup.launch_support import generate_task_launch_description


def generate_launch_description():
    return generate_task_launch_description("wipe_board")
