"""Action chunking (Q-chunking: Li, Zhou & Levine 2025, arXiv 2507.07969): what an agent that
trains on sequences of H steps and acts with chunks of actions uses.

An agent opts in with two contract hooks (flowrl.kit.contract):
- `sequence_horizon(config) -> H`: its training batches are sequences of H steps
  (flowrl.engine.sampling: actions [B, H, A], per-step rewards, running masks and terminals, VALID,
  the observation at t + H). An agent that defines it takes the run's `--horizon_length` in its
  config (HORIZON_KEY; `config_horizon` is then the hook); agents without it refuse a horizon above 1.
- `action_horizon(config) -> H'`: its `sample_actions` returns chunks of H' actions ([B, H' * A],
  time-major), which evaluation and online acting execute open loop. Q-chunking's agents act with
  H' = H; its ablations FQL-n and BFN-n learn from H-step sequences but act one step at a time (H' = 1).
With H = 1 the batches are single transitions; `as_sequences` shows them to an agent as sequences
of one step.
"""

import jax.numpy as jnp

from flowrl.kit import contract

HORIZON_KEY = 'horizon_length'
VALID = 'valid'  # sequence-batch field: whether step i still belongs to the episode of step 0


def config_horizon(config) -> int:
    """The `sequence_horizon` hook of an agent whose config holds HORIZON_KEY."""
    return int(config[HORIZON_KEY])


def sequence_horizon(agent, config) -> int:
    """Steps per training-batch row of `agent` with `config` (1 for agents without the hook)."""
    return int(contract.hook(agent, 'sequence_horizon')(config))


def action_horizon(agent, config) -> int:
    """Actions per `sample_actions` output of `agent` with `config` (1 for agents without the hook)."""
    return int(contract.hook(agent, 'action_horizon')(config))


def takes_horizon(agent) -> bool:
    """Whether `agent` trains on sequences (defines `sequence_horizon`): the run gives it --horizon_length."""
    return contract.defines(agent, 'sequence_horizon')


def as_sequences(batch: dict) -> dict:
    """`batch` with sequence fields: a batch of single transitions (actions [B, A]) becomes
    sequences of one step (actions [B, 1, A], rewards, masks, terminals [B, 1], VALID ones); a
    sequence batch is returned as it is."""
    if VALID in batch:
        return batch
    one_step = {k: batch[k][:, None] for k in ('actions', 'rewards', 'masks', 'terminals')}
    return {**batch, **one_step, VALID: jnp.ones_like(one_step['rewards'])}


def discounted_sum(rewards, discount):
    """sum_i discount^i rewards[..., i]: the H-step return of a sequence batch (the Q-chunking
    code's `rewards[..., -1]`, which it sums in the sampler with the run's discount; here the agent
    sums with its own, which a sweep may vary)."""
    powers = discount ** jnp.arange(rewards.shape[-1], dtype=rewards.dtype)
    return jnp.sum(rewards * powers, axis=-1)


def flat_chunks(actions):
    """[B, H, A] -> [B, H * A], time-major (the layout `sample_actions` returns)."""
    return actions.reshape(actions.shape[:-2] + (-1,))


def step_actions(chunks, horizon: int):
    """[..., H * A] -> [..., H, A]: action t of each chunk at [..., t, :]."""
    return chunks.reshape(chunks.shape[:-1] + (horizon, chunks.shape[-1] // horizon))
