"""A test agent that acts on chunks of `config.horizon_length` actions (flowrl.engine.action_queue's
convention: [B, H * A], time-major), with actions that say where they come from:

    action t of the chunk sampled at observation o by the agent at step k, component j =
        (t + 1) / 10 + o[j] / 1000 + k / 10000 (+ `noise` x a normal draw from the key)

so a test reads off which chunk position, which observation and which update an executed action
came from. Its update trains nothing (a zero gradient: Adam leaves the parameter as it is) and only
adds one to the step; it accepts any batch with `actions` (single transitions, or the [B, H, A]
sequences of a chunked sampler). Load it with `--agent=tests/chunked_agent.py` or `import_chunked_agent()`.
"""

import jax
import jax.numpy as jnp
import ml_collections

from flowrl.kit import agent_state as st
from flowrl.kit import chunking

DYNAMIC_KEYS = ('lr',)
# Contract hooks: it takes the run's --horizon_length and acts with chunks of that many actions.
sequence_horizon = action_horizon = chunking.config_horizon


def init(rng, example_batch, config):
    params = dict(scale=jnp.ones((), jnp.float32))  # a parameter for the optimizer to hold
    return st.create_state(config, params, target_names=(), dynamic_keys=DYNAMIC_KEYS,
                           action_dim=example_batch['actions'].shape[-1])


def update(state, batch, rng):
    grads = jax.tree.map(jnp.zeros_like, state.params)
    return st.apply_gradients(state, grads), {'chunked/batch_action_mean': jnp.mean(batch['actions'])}


def chunk_value(time_in_chunk, observation_part, step):
    """The action formula above without its noise (a test's expected actions use it too)."""
    return (time_in_chunk + 1) / 10 + observation_part / 1000 + step / 10000


def sample_actions(state, observations, rng):
    config = state.config
    horizon, action_dim = config.horizon_length, config.action_dim
    times = jnp.arange(horizon, dtype=jnp.float32)[None, :, None]
    chunks = chunk_value(times, observations[:, None, :action_dim], state.step.astype(jnp.float32))
    chunks = chunks + config.noise * jax.random.normal(rng, chunks.shape)
    return chunks.reshape(observations.shape[0], horizon * action_dim)


def get_config():
    return ml_collections.ConfigDict(dict(
        agent_name='chunked_test',
        lr=1e-3,  # Adam learning rate (dynamic; the gradient is zero).
        batch_size=8,  # Rows per update.
        horizon_length=1,  # Actions per chunk (the run's --horizon_length).
        noise=0.0,  # Scale of the key's normal draw added to every action (0: deterministic).
    ))
