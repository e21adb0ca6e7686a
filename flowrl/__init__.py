"""flowrl: offline RL with flow-matching policies in JAX/Flax.

Layers (docs/DESIGN.md, "Layers"; tests/test_layers.py keeps them), each importing only those
below it:

    run       settings, overrides, presets, loggers, progress, the runner and its parts, evaluate_run
    results   final scores, report, statistics, published numbers
    engine    compiled training, online and evaluation programs, replay, env pools, checkpoints,
              placement                     | suites  OGBench and D4RL tasks, their data, envs
    kit       what agents are made of: state, networks, encoders, flow, losses, pixel batches
    base      this package's top modules: errors, headless, stopping, disk, run_files

The engine and the suites stand side by side: neither imports the other. agents/ import the
kit and base; configs/ also the suites (OGBench's family names). flowrl.testing (test helpers)
may import anything.
"""

from flowrl import headless

__version__ = "0.1.0"

# Before anything imports dm_control or mujoco, in every process (worker processes import flowrl too).
headless.choose_mujoco_backend()
