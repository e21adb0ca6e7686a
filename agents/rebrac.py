"""ReBRAC: Revisited BRAC (Tarasov et al. 2023), as configured in the FQL paper.

TD3+BC with LayerNorm twin critics and a tanh deterministic actor (last layer init scale
`actor_fc_scale`): the actor maximises min(Q1, Q2) / sg(mean|Q|) minus `alpha_actor` times the
squared error to the dataset action; the critic's TD target uses the target actor with
clipped Gaussian noise and subtracts `alpha_critic` times the squared error between that next
action and the dataset's next action. Math: docs/ALGORITHMS.md, "Baselines".

Delayed updates live inside `update`: update number n = step + 1 is a "full" update when
n % actor_freq == 0 (the official loop's `i % actor_freq == 0` with i counting from 1). Only
full updates add the actor loss and Polyak-update both targets. As in the authors' code (one
Adam over all networks, the actor loss simply left out of the sum), every update takes an Adam
step on every network: on the other updates the actor's gradient is zero, but Adam's moments
decay and its bias-corrected momentum still moves the actor. `lax.cond` skips the actor loss on
those updates (under vmap both branches run).

Batches need `next_actions` (the dataset action at s'): `prepare_dataset`, the optional hook
of the agent contract that the training loop calls once on the host dataset, adds it.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flowrl.kit import agent_state as st
from flowrl.kit.encoders import with_encoders
from flowrl.kit.losses import td_loss
from flowrl.kit.networks import ConditionedPolicy, Ensemble, apply_named as _apply

DYNAMIC_KEYS = ('lr', 'alpha_actor', 'alpha_critic', 'discount', 'tau', 'actor_noise', 'actor_noise_clip')


def prepare_dataset(dataset: dict) -> dict:
    """Training-loop hook: adds `next_actions[i] = actions[i + 1]` (host arrays), keeping `actions[i]` where
    `terminals[i]` ends an episode, so the penalty never compares actions of two episodes."""
    actions = np.asarray(dataset['actions'])
    ends = np.asarray(dataset['terminals']).astype(bool)
    shifted = np.concatenate([actions[1:], actions[-1:]], axis=0)
    return {**dataset, 'next_actions': np.where(ends[:, None], actions, shifted)}


@with_encoders
def networks(config):
    """The agent's network definitions (static: built from the static config)."""
    return dict(
        critic=Ensemble(config.value_hidden_dims, num=2, layer_norm=config.layer_norm),
        actor=ConditionedPolicy(config.actor_hidden_dims, config.action_dim, config.actor_layer_norm,
                                final_init_scale=config.actor_fc_scale),
    )


def init(rng, example_batch, config):
    """Initial state for observations/actions shaped like `example_batch`."""
    return st.init_state(networks, jax.random.split(rng), example_batch, config,
                         dict(critic=st.STATE_ACTION, actor=st.STATE),
                         target_names=('critic', 'actor'), dynamic_keys=DYNAMIC_KEYS)


def policy_actions(nets, params, observations):
    """The deterministic tanh actor: actions in (-1, 1)."""
    return jnp.tanh(_apply(nets, 'actor', params, observations))


def clipped_noise(hparams, rng, shape):
    """Gaussian noise of scale `actor_noise`, clipped to +-`actor_noise_clip` (TD3's smoothing noise)."""
    return jnp.clip(hparams['actor_noise'] * jax.random.normal(rng, shape),
                    -hparams['actor_noise_clip'], hparams['actor_noise_clip'])


def critic_target(next_qs, next_actions, data_next_actions, rewards, masks, discount, alpha_critic):
    """r + discount * mask * (min_k Qbar_k(s', a') - alpha_critic * ||a' - a'_data||^2)."""
    penalty = jnp.sum((next_actions - data_next_actions) ** 2, axis=-1)
    return rewards + discount * masks * (jnp.min(next_qs, axis=0) - alpha_critic * penalty)


def critic_loss(nets, params, target_params, hparams, batch, rng):
    """TD loss of both critics with the noisy target actor's next action (moves Q only)."""
    next_obs = batch['next_observations']
    next_actions = policy_actions(nets, target_params, next_obs)
    noise = clipped_noise(hparams, rng, next_actions.shape)
    next_actions = jnp.clip(next_actions + noise, -1, 1)
    if 'next_actions' not in batch:
        raise KeyError("ReBRAC batches need 'next_actions'; build them with rebrac.prepare_dataset(dataset).")
    data_next_actions = batch['next_actions']
    next_qs = _apply(nets, 'critic', target_params, next_obs, next_actions)
    target = critic_target(next_qs, next_actions, data_next_actions, batch['rewards'], batch['masks'],
                           hparams['discount'], hparams['alpha_critic'])
    qs = _apply(nets, 'critic', params, batch['observations'], batch['actions'])
    return td_loss(qs, target)


def actor_objective(q, actions, data_actions, alpha_actor):
    """-mean(Q) / sg(mean|Q|) + alpha_actor * mean ||a - a_data||^2 (returns loss, Q loss, BC loss)."""
    q_loss = -jnp.mean(q) * jax.lax.stop_gradient(1.0 / jnp.abs(q).mean())
    bc_loss = alpha_actor * jnp.mean(jnp.sum((actions - data_actions) ** 2, axis=-1))
    return q_loss + bc_loss, q_loss, bc_loss


def actor_loss(nets, params, hparams, batch):
    """Deterministic policy gradient through the frozen critics plus the BC penalty (moves the actor only)."""
    observations = batch['observations']
    actions = policy_actions(nets, params, observations)
    q = jnp.min(_apply(nets, 'critic', jax.lax.stop_gradient(params), observations, actions), axis=0)
    loss, q_loss, bc_loss = actor_objective(q, actions, batch['actions'], hparams['alpha_actor'])
    return loss, {'actor/loss': loss, 'actor/q_loss': q_loss, 'actor/bc_loss': bc_loss, 'actor/q': q.mean(),
                  'actor/mse_to_data': jnp.mean((actions - batch['actions']) ** 2)}


def is_full_update(state):
    """Whether the update about to be applied moves the actor and the targets."""
    return (state.step + 1) % state.config.actor_freq == 0


def total_loss(params, state, batch, rng, full):
    nets = networks(state.config)
    c_loss, c_info = critic_loss(nets, params, state.target_params, state.hparams, batch, rng)
    a_loss, a_info = jax.lax.cond(
        full,
        lambda p: actor_loss(nets, p, state.hparams, batch),
        # Off updates: no actor loss; zeros keep the metrics' structure (see 'actor/updated').
        lambda p: jax.tree.map(jnp.zeros_like, jax.eval_shape(lambda: actor_loss(nets, p, state.hparams, batch))),
        params)
    return c_loss + a_loss, {**c_info, **a_info, 'actor/updated': full.astype(jnp.float32)}


def update(state, batch, rng):
    """One Adam step on all networks every update (the actor loss only every `actor_freq`, so the
    actor moves by momentum in between, as in the authors' code); targets every `actor_freq`."""
    full = is_full_update(state)
    grads, info = jax.grad(total_loss, has_aux=True)(state.params, state, batch, rng, full)
    new = st.apply_gradients(state, grads)
    targets = st.update_targets(new, new.hparams['tau']).target_params
    new = new.replace(target_params=jax.tree.map(lambda t, o: jnp.where(full, t, o), targets, state.target_params))
    return new, info


def sample_actions(state, observations, rng):
    """The deterministic actor (`rng` is unused but kept for the contract)."""
    del rng
    return policy_actions(networks(state.config), state.params, observations)


def explore_actions(state, observations, rng):
    """The actor plus Gaussian noise of scale `actor_noise` clipped at `actor_noise_clip`, then
    clipped to [-1, 1]: the authors' online environment steps (temperature 1)."""
    actions = policy_actions(networks(state.config), state.params, observations)
    return jnp.clip(actions + clipped_noise(state.hparams, rng, actions.shape), -1, 1)


def get_config():
    return ml_collections.ConfigDict(dict(
        agent_name='rebrac',
        encoder=None,  # Image encoder of every network for pixel observations (flowrl.kit.encoders), e.g. 'impala_small'.
        lr=3e-4,  # Adam learning rate (dynamic).
        batch_size=256,  # Transitions per update.
        actor_hidden_dims=(512, 512, 512, 512),  # Actor MLP.
        value_hidden_dims=(512, 512, 512, 512),  # Critic MLPs.
        layer_norm=True,  # LayerNorm in the critics.
        actor_layer_norm=False,  # LayerNorm in the actor.
        discount=0.99,  # Discount factor (dynamic).
        tau=0.005,  # Target Polyak rate, applied on full updates only (dynamic).
        actor_fc_scale=0.01,  # Init scale of the actor's last layer (initial actions near 0).
        alpha_actor=0.0,  # Actor BC penalty coefficient (dynamic; set per environment).
        alpha_critic=0.0,  # Critic BC penalty coefficient (dynamic; set per environment).
        actor_freq=2,  # The actor loss and the targets enter every `actor_freq` updates (Adam steps every update).
        actor_noise=0.2,  # Std of the target actor's Gaussian noise (dynamic).
        actor_noise_clip=0.5,  # The noise is clipped to +-actor_noise_clip (dynamic).
    ))
