"""Q-chunking (Li, Zhou & Levine, "Reinforcement Learning with Action Chunking", NeurIPS 2025;
the authors' `agents/acfql.py`, github.com/ColinQiyangLi/qc): FQL and best-of-N flow policies whose
critic and policy act on chunks of H actions (H = the run's `--horizon_length`).

One agent, as in the authors' code, with two switches:
- `actor_type='distill-ddpg'`: FQL's one-step policy distilled from the BC flow and pushed up the
  critic (QC-FQL; FQL at H = 1). `actor_type='best-of-n'`: acting takes the best of
  `actor_num_samples` BC-flow samples under the critic, and there is no one-step policy loss
  (QC with 32 samples; BFN at H = 1).
- `action_chunking=True`: the BC flow, the one-step policy and the critic take the whole chunk
  a_{t:t+H} (H * A numbers); the critic's target is the H-step discounted reward sum plus
  gamma^H Q_target(s_{t+H}, a'), counted only where the chunk stays inside one episode, and the
  BC flow loss counts only the chunk's steps inside the episode. `False` (FQL-n, BFN-n): single
  actions (the chunk's first) with the same H-step target.
Math and the differences from FQL: docs/ALGORITHMS.md, "Q-chunking". The training batches are
sequences of H steps (flowrl.engine.sampling); `sample_actions` returns chunks [B, H * A] (time-major)
with chunking, single actions [B, A] without; the run executes chunks open loop.
"""

import jax
import jax.numpy as jnp
import ml_collections

from flowrl.agents import fql
from flowrl.errors import UserError
from flowrl.kit import agent_state as st
from flowrl.kit import chunking
from flowrl.kit.encoders import apply_head, batch_shape, repeated_features, with_encoders
from flowrl.kit.flow import euler_from_features, euler_samples, sample_path_points
from flowrl.kit.networks import ConditionedPolicy, Ensemble, VelocityField, apply_named as _apply

DYNAMIC_KEYS = ('lr', 'alpha', 'discount', 'tau')
ACTOR_TYPES = ('distill-ddpg', 'best-of-n')


sequence_horizon = chunking.config_horizon  # contract hook: batches of H-step sequences (H = --horizon_length)


def action_horizon(config) -> int:
    """Contract hook: chunks of H actions with `action_chunking`, else one action per decision
    (FQL-n, BFN-n: the H-step target with single actions)."""
    return config[chunking.HORIZON_KEY] if config.action_chunking else 1


@with_encoders
def networks(config):
    """FQL's networks on the acting dimension (`config.action_dim`: H * A with chunking, else A)."""
    return dict(
        critic=Ensemble(config.value_hidden_dims, num=config.num_qs, layer_norm=config.layer_norm),
        actor_bc_flow=VelocityField(config.actor_hidden_dims, config.action_dim, config.actor_layer_norm),
        actor_onestep_flow=ConditionedPolicy(config.actor_hidden_dims, config.action_dim, config.actor_layer_norm),
    )


def check_config(config) -> None:
    if config.actor_type not in ACTOR_TYPES:
        raise UserError(f'--agent.actor_type must be one of {", ".join(ACTOR_TYPES)}, got {config.actor_type!r}.')
    if config.actor_num_samples < 1:
        raise UserError(f'--agent.actor_num_samples must be a positive integer, got {config.actor_num_samples}.')
    if config[chunking.HORIZON_KEY] < 1:
        raise UserError(f'The horizon (--horizon_length) must be a positive integer, got {config[chunking.HORIZON_KEY]}.')


def init(rng, example_batch, config):
    """Initial state for observations and (single-step) actions shaped like `example_batch` (a batch
    of transitions or of sequences: the action size is its last axis)."""
    check_config(config)
    actions = example_batch['actions']
    step_dim = actions.shape[-1]
    leading = example_batch['observations'].shape[:len(batch_shape(config, example_batch['observations']))]
    example = dict(observations=example_batch['observations'],
                   actions=jnp.zeros(leading + (step_dim * action_horizon(config),), actions.dtype))
    inputs = dict(critic=st.STATE_ACTION, actor_bc_flow=st.FLOW, actor_onestep_flow=st.STATE_ACTION)
    return st.init_state(networks, jax.random.split(rng, 3), example, config, inputs,
                         target_names=('critic',), dynamic_keys=DYNAMIC_KEYS)


def decision_actions(config, batch):
    """The actions the critic and the policies see: the chunk flattened ([B, H * A]) with chunking,
    else the first action of each sequence ([B, A])."""
    actions = batch['actions']  # [B, H, A]
    return chunking.flat_chunks(actions) if config.action_chunking else actions[:, 0]


def policy_actions(nets, params, config, observations, rng):
    """The policy's actions (no gradient to the networks): FQL's clipped one-step policy, or the best
    of `actor_num_samples` clipped BC-flow samples under the critic (`q_agg` over the ensemble)."""
    params = jax.lax.stop_gradient(params)
    if config.actor_type == 'distill-ddpg':
        noises = jax.random.normal(rng, batch_shape(config, observations) + (config.action_dim,))
        return jnp.clip(fql.one_step_actions(nets, params, observations, noises), -1, 1)
    flow, critic, n = nets['actor_bc_flow'], nets['critic'], config.actor_num_samples
    features = repeated_features(flow, params['actor_bc_flow'], observations, n)  # [N, ..., features]
    noises = jax.random.normal(rng, features.shape[:-1] + (config.action_dim,))
    candidates = euler_from_features(flow, params['actor_bc_flow'], features, noises, config.flow_steps)
    critic_features = repeated_features(critic, params['critic'], observations, n)
    q = st.aggregate_q(apply_head(critic, params['critic'], critic_features, candidates), config.q_agg)  # [N, ...]
    best = jnp.argmax(q, axis=0)
    return jnp.take_along_axis(candidates, best[None, ..., None], axis=0)[0]


def critic_loss(nets, params, target_params, hparams, config, batch, rng):
    """Squared error to r_t + ... + gamma^(H-1) r_{t+H-1} + gamma^H m Q_target(s_{t+H}, a'), a' the
    policy's at s_{t+H}, weighted by whether the whole chunk is inside the episode (`valid` of its
    last step), averaged over critics and batch (invalid rows count as zeros, as in the authors' code)."""
    next_obs = batch['next_observations']
    next_actions = policy_actions(nets, params, config, next_obs, rng)
    next_q = st.aggregate_q(_apply(nets, 'critic', target_params, next_obs, next_actions), config.q_agg)
    horizon = batch['rewards'].shape[-1]
    returns = chunking.discounted_sum(batch['rewards'], hparams['discount'])
    target = jax.lax.stop_gradient(returns + hparams['discount'] ** horizon * batch['masks'][:, -1] * next_q)
    qs = _apply(nets, 'critic', params, batch['observations'], decision_actions(config, batch))
    loss = jnp.mean((qs - target) ** 2 * batch[chunking.VALID][:, -1])
    return loss, {'critic/loss': loss, 'critic/q_mean': qs.mean(), 'critic/q_max': qs.max(), 'critic/q_min': qs.min()}


def bc_flow_loss(nets, params, config, batch, rng):
    """Flow matching of v_theta to the decision actions; with chunking, each step's error counts only
    where the step is inside the episode of the chunk's first (`valid`), averaged over every entry."""
    actions = decision_actions(config, batch)
    observations = batch['observations']
    _, t, x_t, velocity = sample_path_points(rng, actions)
    errors = (_apply(nets, 'actor_bc_flow', params, observations, x_t, t) - velocity) ** 2
    if config.action_chunking:
        errors = chunking.step_actions(errors, batch['actions'].shape[1]) * batch[chunking.VALID][..., None]
    return jnp.mean(errors)


def actor_loss(nets, params, hparams, config, batch, rng):
    """BC flow loss, plus (distill-ddpg) alpha * distillation - mean Q(s, clip(mu(s, z)))."""
    bc_rng, noise_rng = jax.random.split(rng)
    bc = bc_flow_loss(nets, params, config, batch, bc_rng)
    if config.actor_type != 'distill-ddpg':
        return bc, {'actor/loss': bc, 'actor/bc_flow_loss': bc}
    observations = batch['observations']
    noises = jax.random.normal(noise_rng, batch_shape(config, observations) + (config.action_dim,))
    distill, onestep = fql.distillation_loss(nets, params, config, observations, noises)
    qs = _apply(nets, 'critic', jax.lax.stop_gradient(params), observations, jnp.clip(onestep, -1, 1))
    q_term = -jnp.mean(qs, axis=0).mean()
    loss = bc + hparams['alpha'] * distill + q_term
    return loss, {'actor/loss': loss, 'actor/bc_flow_loss': bc, 'actor/distill_loss': distill,
                  'actor/q_loss': q_term}


total_loss = st.critic_and_actor_loss(networks, critic_loss, actor_loss)


def update(state, batch, rng):
    """One gradient step on critic + actor losses, then the critic's Polyak target update. Takes
    sequence batches (flowrl.engine.sampling) or, at H = 1, batches of single transitions."""
    return st.gradient_step(state, total_loss, chunking.as_sequences(batch), rng)


def sample_actions(state, observations, rng):
    """The policy's action chunks [..., H * A] (time-major; [..., A] without chunking)."""
    return policy_actions(networks(state.config), state.params, state.config, observations, rng)


def get_config():
    return ml_collections.ConfigDict(dict(
        agent_name='acfql',
        encoder=None,  # Image encoder of every network for pixel observations (flowrl.kit.encoders), e.g. 'impala_small'.
        lr=3e-4,  # Adam learning rate (dynamic).
        batch_size=256,  # Sequences per update.
        actor_hidden_dims=(512, 512, 512, 512),  # BC flow and one-step policy MLPs.
        value_hidden_dims=(512, 512, 512, 512),  # Critic MLPs.
        layer_norm=True,  # LayerNorm in the critics.
        actor_layer_norm=False,  # LayerNorm in the actor networks.
        discount=0.99,  # Discount factor per environment step (dynamic); the chunk's target uses discount^H.
        tau=0.005,  # Target critic Polyak rate (dynamic).
        q_agg='mean',  # How the target (and best-of-n acting) combines the critics: 'mean' or 'min'.
        alpha=100.0,  # Distillation weight (dynamic; the authors' commands use 100).
        num_qs=2,  # Critics in the ensemble.
        flow_steps=10,  # Euler steps of the BC flow.
        actor_type='distill-ddpg',  # 'distill-ddpg' (QC-FQL, FQL-n, FQL) or 'best-of-n' (QC, BFN-n, BFN).
        actor_num_samples=32,  # BC-flow samples per decision for 'best-of-n' (QC: 32; BFN: 4).
        action_chunking=True,  # False: single actions with the H-step target (FQL-n, BFN-n).
        horizon_length=1,  # H, set by the run's --horizon_length (the authors' flag); 1: single transitions.
    ))
