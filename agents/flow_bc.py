"""Flow BC: behaviour cloning with a flow-matching policy (the FQL paper's flow baseline).

A velocity field v_theta(s, x, t) is trained by conditional flow matching on the dataset
actions; acting integrates it with `flow_steps` Euler steps from Gaussian noise. There is no
critic. QFQL's sampler with guidance 0 and IFQL's candidate sampler are this sampler.
Math: docs/ALGORITHMS.md, "Baselines" and "FQL" step 2.
"""

import jax
import ml_collections

from flowrl.kit import agent_state as st
from flowrl.kit.encoders import batch_shape, with_encoders
from flowrl.kit.flow import euler_samples, flow_matching_loss
from flowrl.kit.networks import VelocityField, apply_named as _apply

# `temperature` only acts at inference; it is the one sweepable value flow BC has besides lr.
DYNAMIC_KEYS = ('lr', 'temperature')


@with_encoders
def networks(config):
    """The agent's network definitions (static: built from the static config)."""
    return dict(actor_bc_flow=VelocityField(config.actor_hidden_dims, config.action_dim, config.actor_layer_norm))


def init(rng, example_batch, config):
    """Initial state for observations/actions shaped like `example_batch`."""
    return st.init_state(networks, [rng], example_batch, config, dict(actor_bc_flow=st.FLOW),
                         target_names=(), dynamic_keys=DYNAMIC_KEYS)


def actor_loss(nets, params, batch, rng):
    """Conditional flow matching on the dataset actions (moves v_theta, the only network)."""
    observations = batch['observations']
    loss = flow_matching_loss(lambda x, t: _apply(nets, 'actor_bc_flow', params, observations, x, t),
                              batch['actions'], rng)
    return loss, {'actor/bc_flow_loss': loss}


def update(state, batch, rng):
    """One Adam step on the flow-matching loss."""
    nets = networks(state.config)
    grads, info = jax.grad(lambda p: actor_loss(nets, p, batch, rng), has_aux=True)(state.params)
    return st.apply_gradients(state, grads), info


def sample_actions(state, observations, rng):
    """Euler integration of the BC flow from x0 ~ N(0, temperature^2 I), clipped to [-1, 1]."""
    nets = networks(state.config)
    noises = jax.random.normal(rng, batch_shape(state.config, observations) + (state.config.action_dim,))
    noises = noises * state.hparams['temperature']  # x * 1.0 is exact: temperature 1 is the plain sampler
    return euler_samples(nets['actor_bc_flow'], state.params['actor_bc_flow'], observations, noises,
                         state.config.flow_steps)


def get_config():
    return ml_collections.ConfigDict(dict(
        agent_name='flow_bc',
        encoder=None,  # Image encoder of every network for pixel observations (flowrl.kit.encoders), e.g. 'impala_small'.
        lr=3e-4,  # Adam learning rate (dynamic).
        batch_size=256,  # Transitions per update.
        actor_hidden_dims=(512, 512, 512, 512),  # Velocity-field MLP.
        actor_layer_norm=False,  # LayerNorm in the velocity field.
        flow_steps=10,  # Euler steps when acting.
        # Not in the published config: scale of the initial noise at acting time (dynamic, so
        # a trained checkpoint can be sampled at several values); 1 is the published sampler.
        temperature=1.0,
    ))
