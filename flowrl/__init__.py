"""flowrl: offline RL with flow-matching policies in JAX/Flax."""

__version__ = "0.1.0"
