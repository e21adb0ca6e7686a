"""IFQL: IQL's value and critic with a BC flow policy, acting by rejection over flow samples
(the FQL paper's flow counterpart of IDQL, Hansen-Estruch et al. 2023).

Training is IQL's expectile value and TD critic (flowrl/kit/losses.py) plus plain flow
matching for the velocity field; nothing couples the flow to the critic during training.
Acting draws `num_samples` Euler samples of the flow per observation and returns the one with
the largest min(Q1, Q2) of the online critics. Math: docs/ALGORITHMS.md, "Baselines".
"""

import jax
import jax.numpy as jnp
import ml_collections

from flowrl.kit import agent_state as st
from flowrl.kit import losses
from flowrl.kit.encoders import apply_head, repeated_features, with_encoders
from flowrl.kit.flow import euler_from_features, flow_matching_loss
from flowrl.kit.networks import Ensemble, VelocityField, apply_named as _apply

DYNAMIC_KEYS = ('lr', 'expectile', 'discount', 'tau')


@with_encoders
def networks(config):
    """The agent's network definitions (static: built from the static config)."""
    return dict(
        critic=Ensemble(config.value_hidden_dims, num=2, layer_norm=config.layer_norm),
        value=Ensemble(config.value_hidden_dims, num=1, layer_norm=config.layer_norm),
        actor_bc_flow=VelocityField(config.actor_hidden_dims, config.action_dim, config.actor_layer_norm),
    )


def init(rng, example_batch, config):
    """Initial state for observations/actions shaped like `example_batch`."""
    inputs = dict(critic=st.STATE_ACTION, value=st.STATE, actor_bc_flow=st.FLOW)
    return st.init_state(networks, jax.random.split(rng, 3), example_batch, config, inputs,
                         target_names=('critic',), dynamic_keys=DYNAMIC_KEYS)


def total_loss(params, state, batch, rng):
    """IQL value + critic losses (move V and Q) + flow matching (moves v_theta)."""
    nets = networks(state.config)
    apply = lambda name, p, *inputs: _apply(nets, name, p, *inputs)
    vc_loss, vc_info = losses.value_and_critic_losses(apply, params, state.target_params, state.hparams, batch)
    observations = batch['observations']
    bc_flow_loss = flow_matching_loss(lambda x, t: apply('actor_bc_flow', params, observations, x, t),
                                      batch['actions'], rng)
    return vc_loss + bc_flow_loss, {**vc_info, 'actor/bc_flow_loss': bc_flow_loss}


def update(state, batch, rng):
    """One gradient step on all losses, then the critic's Polyak target update."""
    return st.gradient_step(state, total_loss, batch, rng)


def candidate_actions(state, observations, rng):
    """`num_samples` clipped Euler samples of the BC flow per observation: [N, ..., action_dim]."""
    net, params = networks(state.config)['actor_bc_flow'], state.params['actor_bc_flow']
    features = repeated_features(net, params, observations, state.config.num_samples)
    noises = jax.random.normal(rng, features.shape[:-1] + (state.config.action_dim,))
    return euler_from_features(net, params, features, noises, state.config.flow_steps)


def sample_actions(state, observations, rng):
    """The candidate with the largest min(Q1, Q2) for each observation."""
    candidates = candidate_actions(state, observations, rng)
    critic, params = networks(state.config)['critic'], state.params['critic']
    features = repeated_features(critic, params, observations, state.config.num_samples)
    q = jnp.min(apply_head(critic, params, features, candidates), axis=0)
    best = jnp.argmax(q, axis=0)  # [...]: one index per observation
    return jnp.take_along_axis(candidates, best[None, ..., None], axis=0)[0]


def get_config():
    return ml_collections.ConfigDict(dict(
        agent_name='ifql',
        encoder=None,  # Image encoder of every network for pixel observations (flowrl.kit.encoders), e.g. 'impala_small'.
        lr=3e-4,  # Adam learning rate (dynamic).
        batch_size=256,  # Transitions per update.
        actor_hidden_dims=(512, 512, 512, 512),  # Velocity-field MLP.
        value_hidden_dims=(512, 512, 512, 512),  # Value and critic MLPs.
        layer_norm=True,  # LayerNorm in the value and critic networks.
        actor_layer_norm=False,  # LayerNorm in the velocity field.
        discount=0.99,  # Discount factor (dynamic).
        tau=0.005,  # Target critic Polyak rate (dynamic).
        expectile=0.9,  # Expectile of the value regression (dynamic).
        num_samples=32,  # Flow samples per observation when acting; the best under the critic is taken.
        flow_steps=10,  # Euler steps per flow sample.
    ))
