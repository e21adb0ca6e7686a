"""Value-learning losses shared by the agents, each returning (loss, metrics).

- `td_loss`: the squared TD error of a critic ensemble against a stop-gradient target, with the
  metrics every critic agent logs (`critic/loss`, `critic/q_mean`, `critic/q_max`, `critic/q_min`).
- IQL's value and critic losses (Kostrikov, Nair & Levine 2022), shared by agents/iql.py,
  agents/ifql.py and agents/flowq.py. Those agents name their networks 'value' (an ensemble of
  one) and 'critic' (twin Q) and keep a target copy of the critic only, as the official FQL
  baselines do.

Gradient routing of IQL (docs/ALGORITHMS.md, "Baselines"):
- value loss: expectile regression of V(s) onto min_k Qbar_k(s, a), the *target* critics:
  moves V only;
- critic loss: (Q_k(s, a) - (r + discount * mask * V(s')))^2 with V frozen: moves Q only.
The math functions take arrays, so they can be checked on hand-computed numbers; the
network-applying functions decide which params are differentiated.
"""

import jax
import jax.numpy as jnp


def regression_metrics(prefix: str, symbol: str, loss, values) -> dict:
    """`prefix/loss` and the mean, max and min of the regressed `values` (`prefix/symbol_mean`, ...)."""
    return {f'{prefix}/loss': loss, f'{prefix}/{symbol}_mean': values.mean(), f'{prefix}/{symbol}_max': values.max(),
            f'{prefix}/{symbol}_min': values.min()}


def td_loss(qs, target, sum_over_critics: bool = False):
    """Squared TD error of each critic Q_k [K, B] against `target` [B] (no gradient through it).

    Averaged over critics and batch, or (`sum_over_critics`, IQL's official form) summed over the
    critics and averaged over the batch; only the critics see this loss, so under Adam the
    factor K changes nothing.
    """
    target = jax.lax.stop_gradient(target)
    errors = (qs - target) ** 2
    loss = jnp.mean(jnp.sum(errors, axis=0)) if sum_over_critics else jnp.mean(errors)
    return loss, regression_metrics('critic', 'q', loss, qs)


def expectile_loss(diff, expectile):
    """|expectile - 1(diff < 0)| * diff^2 elementwise: diff >= 0 (Q above V) weighs `expectile`."""
    weight = jnp.where(diff >= 0, expectile, 1.0 - expectile)
    return weight * diff ** 2


def value_loss_from_values(v, target_qs, expectile):
    """Mean expectile loss of V(s) [B] against min over the target ensemble of Q [2, B]."""
    q = jax.lax.stop_gradient(jnp.min(target_qs, axis=0))
    loss = jnp.mean(expectile_loss(q - v, expectile))
    return loss, regression_metrics('value', 'v', loss, v)


def critic_loss_from_values(qs, next_v, rewards, masks, discount):
    """IQL's TD loss of each critic Q_k [2, B] against r + discount * mask * V(s'), summed over
    the two critics and averaged over the batch, as the official implementation does."""
    return td_loss(qs, rewards + discount * masks * next_v, sum_over_critics=True)


def value_loss(apply, params, target_params, hparams, batch):
    """Expectile loss of V(s) (differentiated) against the target critics; `apply(name, params,
    *inputs)` runs a network. V is an ensemble of one: its output [1, B] is squeezed to [B]."""
    observations = batch['observations']
    target_qs = apply('critic', target_params, observations, batch['actions'])
    v = apply('value', params, observations)[0]
    return value_loss_from_values(v, target_qs, hparams['expectile'])


def critic_loss(apply, params, hparams, batch):
    """TD loss of the critics (differentiated) against r + discount * mask * V(s') (frozen)."""
    next_v = apply('value', jax.lax.stop_gradient(params), batch['next_observations'])[0]
    qs = apply('critic', params, batch['observations'], batch['actions'])
    return critic_loss_from_values(qs, next_v, batch['rewards'], batch['masks'], hparams['discount'])


def value_and_critic_losses(apply, params, target_params, hparams, batch):
    """Sum of IQL's value and critic losses and their merged metrics."""
    v_loss, v_info = value_loss(apply, params, target_params, hparams, batch)
    c_loss, c_info = critic_loss(apply, params, hparams, batch)
    return v_loss + c_loss, {**v_info, **c_info}
