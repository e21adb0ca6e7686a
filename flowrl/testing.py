"""Helpers for testing agents on tiny problems (used by the test suite; handy for new agents)."""

import glob
import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np

AGENTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'agents')


def agent_names() -> list[str]:
    """Every agent module in agents/ (file stems), sorted."""
    files = glob.glob(os.path.join(AGENTS_DIR, '*.py'))
    return sorted(os.path.basename(f)[:-3] for f in files if not os.path.basename(f).startswith('_'))


def import_agent(name: str):
    return importlib.import_module(f'agents.{name}')


def tiny_config(agent, hidden=(32, 32), batch_size=16, **overrides):
    """The agent's default config with small networks and batches, for fast tests."""
    config = agent.get_config()
    for key in config:
        if key.endswith('hidden_dims'):
            config[key] = tuple(hidden)
    config.batch_size = batch_size
    for key, value in overrides.items():
        config[key] = value
    return config


def synthetic_batch(rng_seed=0, batch_size=16, obs_dim=6, action_dim=3):
    """A random batch of transitions with the fields every agent reads."""
    rng = np.random.default_rng(rng_seed)
    obs = rng.normal(size=(batch_size, obs_dim)).astype(np.float32)
    actions = rng.uniform(-0.99, 0.99, size=(batch_size, action_dim)).astype(np.float32)
    return dict(
        observations=jnp.asarray(obs),
        actions=jnp.asarray(actions),
        next_actions=jnp.asarray(np.roll(actions, -1, axis=0)),
        rewards=jnp.asarray(-rng.integers(0, 2, size=batch_size).astype(np.float32)),
        masks=jnp.asarray(rng.integers(0, 2, size=batch_size).astype(np.float32)),
        terminals=jnp.zeros(batch_size, jnp.float32),
        next_observations=jnp.asarray(obs + 0.1 * rng.normal(size=obs.shape).astype(np.float32)),
    )


def stack(trees):
    """Stacks a list of pytrees along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def index(tree, i):
    """Member i of a stacked pytree."""
    return jax.tree.map(lambda x: x[i], tree)


def max_abs_diff(a, b) -> float:
    # On the host: the two trees may live on different devices (e.g. a sharded run and a single one).
    diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32)))), a, b)
    return max(jax.tree.leaves(diffs) or [0.0])
