"""FQL: Flow Q-Learning (Park, Li & Levine, 2025).

A BC flow policy v_theta is trained by flow matching; a one-step policy mu_omega(s, z) is
distilled from the flow's 10-step Euler samples and pushed up the critic; acting is one
forward pass of mu_omega. Math and gradient routing: docs/ALGORITHMS.md, "FQL".
"""

import jax
import jax.numpy as jnp
import ml_collections

from flowrl.kit import agent_state as st
from flowrl.kit.encoders import batch_shape, with_encoders
from flowrl.kit.flow import euler_samples, flow_matching_loss
from flowrl.kit.losses import td_loss
from flowrl.kit.networks import ConditionedPolicy, Ensemble, VelocityField, apply_named as _apply

DYNAMIC_KEYS = ('lr', 'alpha', 'discount', 'tau')


@with_encoders
def networks(config):
    """The agent's network definitions (static: built from the static config)."""
    return dict(
        critic=Ensemble(config.value_hidden_dims, num=2, layer_norm=config.layer_norm),
        actor_bc_flow=VelocityField(config.actor_hidden_dims, config.action_dim, config.actor_layer_norm),
        actor_onestep_flow=ConditionedPolicy(config.actor_hidden_dims, config.action_dim, config.actor_layer_norm),
    )


def init(rng, example_batch, config):
    """Initial state for observations/actions shaped like `example_batch`."""
    inputs = dict(critic=st.STATE_ACTION, actor_bc_flow=st.FLOW, actor_onestep_flow=st.STATE_ACTION)
    return st.init_state(networks, jax.random.split(rng, 3), example_batch, config, inputs,
                         target_names=('critic',), dynamic_keys=DYNAMIC_KEYS)


def one_step_actions(nets, params, observations, noises):
    """mu_omega(s, z), unclipped."""
    return _apply(nets, 'actor_onestep_flow', params, observations, noises)


def critic_loss(nets, params, target_params, hparams, config, batch, rng):
    """TD loss of both critics; the next action is the one-step policy's (no gradient)."""
    next_obs = batch['next_observations']
    noises = jax.random.normal(rng, batch['actions'].shape)
    next_actions = jnp.clip(one_step_actions(nets, jax.lax.stop_gradient(params), next_obs, noises), -1, 1)
    next_q = st.aggregate_q(_apply(nets, 'critic', target_params, next_obs, next_actions), config.q_agg)
    qs = _apply(nets, 'critic', params, batch['observations'], batch['actions'])
    return td_loss(qs, batch['rewards'] + hparams['discount'] * batch['masks'] * next_q)


def bc_flow_loss(nets, params, batch, rng):
    """Flow matching of v_theta to the dataset actions (moves v_theta only)."""
    observations = batch['observations']
    return flow_matching_loss(
        lambda x, t: _apply(nets, 'actor_bc_flow', params, observations, x, t), batch['actions'], rng)


def distillation_loss(nets, params, config, observations, noises):
    """mean (mu_omega(s, z) - Euler_K(v_theta)(s, z))^2; the flow is a fixed target (moves mu only)."""
    frozen = jax.lax.stop_gradient(params['actor_bc_flow'])
    flow_actions = euler_samples(nets['actor_bc_flow'], frozen, observations, noises, config.flow_steps)
    onestep = one_step_actions(nets, params, observations, noises)
    return jnp.mean((onestep - flow_actions) ** 2), onestep


def q_loss(nets, params, config, observations, onestep):
    """-mean Q(s, clip(mu_omega(s, z))) with the critic frozen (moves mu only)."""
    qs = _apply(nets, 'critic', jax.lax.stop_gradient(params), observations, jnp.clip(onestep, -1, 1))
    q = jnp.mean(qs, axis=0)
    loss = -q.mean()
    if config.normalize_q_loss:
        loss = loss * jax.lax.stop_gradient(1.0 / jnp.abs(q).mean())
    return loss, q


def actor_loss(nets, params, hparams, config, batch, rng):
    """BC flow loss + alpha * distillation + Q loss (same noise z for the last two)."""
    bc_rng, noise_rng = jax.random.split(rng)
    observations = batch['observations']
    noises = jax.random.normal(noise_rng, batch['actions'].shape)
    bc = bc_flow_loss(nets, params, batch, bc_rng)
    distill, onestep = distillation_loss(nets, params, config, observations, noises)
    q_term, q = q_loss(nets, params, config, observations, onestep)
    loss = bc + hparams['alpha'] * distill + q_term
    return loss, {'actor/loss': loss, 'actor/bc_flow_loss': bc, 'actor/distill_loss': distill,
                  'actor/q_loss': q_term, 'actor/q': q.mean(),
                  'actor/mse_to_data': jnp.mean((jnp.clip(onestep, -1, 1) - batch['actions']) ** 2)}


total_loss = st.critic_and_actor_loss(networks, critic_loss, actor_loss)


def update(state, batch, rng):
    """One gradient step on critic + actor losses, then the critic's Polyak target update."""
    return st.gradient_step(state, total_loss, batch, rng)


def sample_actions(state, observations, rng):
    """One forward pass of the one-step policy, clipped to the action box."""
    nets = networks(state.config)
    noises = jax.random.normal(rng, batch_shape(state.config, observations) + (state.config.action_dim,))
    return jnp.clip(one_step_actions(nets, state.params, observations, noises), -1, 1)


def get_config():
    return ml_collections.ConfigDict(dict(
        agent_name='fql',
        encoder=None,  # Image encoder of every network for pixel observations (flowrl.kit.encoders), e.g. 'impala_small'.
        lr=3e-4,  # Adam learning rate (dynamic).
        batch_size=256,  # Transitions per update.
        actor_hidden_dims=(512, 512, 512, 512),  # BC flow and one-step policy MLPs.
        value_hidden_dims=(512, 512, 512, 512),  # Critic MLPs.
        layer_norm=True,  # LayerNorm in the critics.
        actor_layer_norm=False,  # LayerNorm in the actor networks.
        discount=0.99,  # Discount factor (dynamic).
        tau=0.005,  # Target critic Polyak rate (dynamic).
        q_agg='mean',  # How the TD target combines the two target critics: 'mean' or 'min'.
        alpha=10.0,  # Distillation weight (dynamic; the paper tunes it per environment).
        flow_steps=10,  # Euler steps of the BC flow that the one-step policy distils.
        normalize_q_loss=False,  # Scale the Q loss by 1 / mean|Q| (no gradient).
    ))
