#!/usr/bin/env bash
# The main job on the embedded default: the simulated water_plant world (MuJoCo, CPU rendering), the emulated
# devices and every ROS 2 node of the runtime, one rollout of the post-trained JALA policy shipped in
# checkpoints/water_plant-jala-small (made by this project's record + post-train commands, see its README.md),
# then a report (camera / joint-state rates, frame-to-chunk latency, chunks executed, holds, Completion Ratio).
# Extra arguments go to launch/run_task.py (see --help), e.g. ./scripts/demo.sh --duration 40 --seed 1003
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup_env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python launch/run_task.py water_plant --sim --duration 30 --checkpoint checkpoints/water_plant-jala-small "$@"
