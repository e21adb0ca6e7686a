"""IQL: Implicit Q-Learning (Kostrikov, Nair & Levine 2022), as configured in the FQL paper.

Expectile value V(s), twin critics regressed onto r + discount * mask * V(s'), and a Gaussian
actor with a constant (or state-independent learned) std, extracted by advantage-weighted
regression (`actor_loss='awr'`: weights exp(alpha (Q - V)) capped at 100) or by DDPG+BC
(`'ddpgbc'`: -Q / mean|Q| - alpha log pi). Acting uses the Gaussian mean, clipped.
Math: docs/ALGORITHMS.md, "Baselines"; value/critic losses in flowrl/kit/losses.py.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from flowrl.kit import agent_state as st
from flowrl.kit import losses
from flowrl.kit.distributions import LOG_STD_RANGE, gaussian_log_prob
from flowrl.kit.encoders import with_encoders
from flowrl.errors import UserError
from flowrl.kit.networks import MLP, Ensemble, apply_named as _apply

DYNAMIC_KEYS = ('lr', 'alpha', 'expectile', 'discount', 'tau')
AWR_WEIGHT_CAP = 100.0  # exp(alpha * advantage) is capped so a few large advantages cannot dominate.


class GaussianActor(nn.Module):
    """Mean MLP(s) (last layer init scale 0.01, as OGBench's actor) and a state-independent log std."""

    hidden_dims: tuple
    action_dim: int
    layer_norm: bool = False
    const_std: bool = True

    @nn.compact
    def __call__(self, observations):
        mean = MLP(self.hidden_dims, self.action_dim, self.layer_norm, final_init_scale=0.01)(observations)
        if self.const_std:
            log_std = jnp.zeros((self.action_dim,))
        else:
            log_std = jnp.clip(self.param('log_stds', nn.initializers.zeros, (self.action_dim,)), *LOG_STD_RANGE)
        return mean, jnp.broadcast_to(log_std, mean.shape)


@with_encoders
def networks(config):
    """The agent's network definitions (static: built from the static config)."""
    return dict(
        critic=Ensemble(config.value_hidden_dims, num=2, layer_norm=config.layer_norm),
        value=Ensemble(config.value_hidden_dims, num=1, layer_norm=config.layer_norm),
        actor=GaussianActor(config.actor_hidden_dims, config.action_dim, config.actor_layer_norm, config.const_std),
    )


def init(rng, example_batch, config):
    """Initial state for observations/actions shaped like `example_batch`."""
    if config.actor_loss not in ('awr', 'ddpgbc'):
        raise UserError(f"actor_loss must be 'awr' or 'ddpgbc', got {config.actor_loss!r}.")
    inputs = dict(critic=st.STATE_ACTION, value=st.STATE, actor=st.STATE)
    return st.init_state(networks, jax.random.split(rng, 3), example_batch, config, inputs,
                         target_names=('critic',), dynamic_keys=DYNAMIC_KEYS)


def awr_objective(log_prob, q, v, alpha):
    """-mean(min(exp(alpha (Q - V)), 100) * log pi(a|s)); the weights carry no gradient."""
    weights = jax.lax.stop_gradient(jnp.minimum(jnp.exp(alpha * (q - v)), AWR_WEIGHT_CAP))
    return -jnp.mean(weights * log_prob), weights


def actor_loss(nets, params, hparams, config, batch, rng):
    """AWR or DDPG+BC; the critic and value are frozen, so only the actor moves."""
    observations, actions = batch['observations'], batch['actions']
    frozen = jax.lax.stop_gradient(params)
    mean, log_std = _apply(nets, 'actor', params, observations)
    log_prob = gaussian_log_prob(actions, mean, log_std)
    info = {'actor/log_prob': log_prob.mean(), 'actor/mse_to_data': jnp.mean((jnp.clip(mean, -1, 1) - actions) ** 2)}

    if config.actor_loss == 'awr':
        q = jnp.min(_apply(nets, 'critic', frozen, observations, actions), axis=0)
        v = _apply(nets, 'value', frozen, observations)[0]
        loss, weights = awr_objective(log_prob, q, v, hparams['alpha'])
        return loss, {**info, 'actor/loss': loss, 'actor/adv': jnp.mean(q - v), 'actor/weight_mean': weights.mean(),
                      'actor/weight_max': weights.max()}

    # DDPG+BC: with a constant std the deterministic mean is pushed up Q; otherwise a
    # reparameterised sample is (as the official implementation does).
    policy_actions = mean if config.const_std else mean + jnp.exp(log_std) * jax.random.normal(rng, mean.shape)
    q = jnp.min(_apply(nets, 'critic', frozen, observations, jnp.clip(policy_actions, -1, 1)), axis=0)
    q_loss = -jnp.mean(q) * jax.lax.stop_gradient(1.0 / jnp.abs(q).mean())
    bc_loss = -hparams['alpha'] * jnp.mean(log_prob)
    loss = q_loss + bc_loss
    return loss, {**info, 'actor/loss': loss, 'actor/q_loss': q_loss, 'actor/bc_loss': bc_loss, 'actor/q': q.mean()}


def total_loss(params, state, batch, rng):
    nets = networks(state.config)
    apply = lambda name, p, *inputs: _apply(nets, name, p, *inputs)
    vc_loss, vc_info = losses.value_and_critic_losses(apply, params, state.target_params, state.hparams, batch)
    a_loss, a_info = actor_loss(nets, params, state.hparams, state.config, batch, rng)
    return vc_loss + a_loss, {**vc_info, **a_info}


def update(state, batch, rng):
    """One gradient step on value + critic + actor losses, then the critic's Polyak target update."""
    return st.gradient_step(state, total_loss, batch, rng)


def sample_actions(state, observations, rng):
    """The Gaussian mean, clipped (deterministic; `rng` is unused but kept for the contract)."""
    del rng
    mean, _ = _apply(networks(state.config), 'actor', state.params, observations)
    return jnp.clip(mean, -1, 1)


def explore_actions(state, observations, rng):
    """A sample of the Gaussian actor, clipped to [-1, 1]: the authors' online environment steps
    (temperature 1), where evaluation acts with the mean."""
    mean, log_std = _apply(networks(state.config), 'actor', state.params, observations)
    return jnp.clip(mean + jnp.exp(log_std) * jax.random.normal(rng, mean.shape), -1, 1)


def get_config():
    return ml_collections.ConfigDict(dict(
        agent_name='iql',
        encoder=None,  # Image encoder of every network for pixel observations (flowrl.kit.encoders), e.g. 'impala_small'.
        lr=3e-4,  # Adam learning rate (dynamic).
        batch_size=256,  # Transitions per update.
        actor_hidden_dims=(512, 512, 512, 512),  # Actor MLP.
        value_hidden_dims=(512, 512, 512, 512),  # Value and critic MLPs.
        layer_norm=True,  # LayerNorm in the value and critic networks.
        actor_layer_norm=False,  # LayerNorm in the actor.
        discount=0.99,  # Discount factor (dynamic).
        tau=0.005,  # Target critic Polyak rate (dynamic).
        expectile=0.9,  # Expectile of the value regression (dynamic; 0.5 = mean, -> 1 = max).
        actor_loss='awr',  # Policy extraction: 'awr' or 'ddpgbc'.
        alpha=10.0,  # AWR inverse temperature, or the BC coefficient for 'ddpgbc' (dynamic).
        const_std=True,  # Fix the actor's std to 1 (else a learned state-independent log std).
    ))
