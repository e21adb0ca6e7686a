"""flowrl: offline RL with flow-matching policies in JAX/Flax."""

from flowrl import headless

__version__ = "0.1.0"

# Before anything imports dm_control or mujoco, in every process (worker processes import flowrl too).
headless.choose_mujoco_backend()
