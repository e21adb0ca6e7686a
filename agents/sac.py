"""SAC: soft actor-critic (Haarnoja et al. 2018) as the FQL authors run it for their RLPD baseline
(`--agent=agents/sac.py --offline_steps=0 --balanced_sampling=1`: RLPD, Ball et al. 2023, is SAC
trained on batches drawn half from the offline data and half from online transitions).

Math (docs/ALGORITHMS.md, "SAC"), per update with a' ~ pi(.|s') and a ~ pi(.|s) reparameterised:
- critic: y = r + discount * mask * Qbar(s', a'), Qbar = min (`q_agg`) of the two target critics,
  a' from the current actor without gradient; no entropy term in y unless `backup_entropy`
  (then y -= discount * mask * alpha * log pi(a'|s')). Loss: mean over both critics of (Q_k - y)^2.
- actor: mean(alpha * log pi(a|s) - mean_k Q_k(s, a)), the critics frozen (note the *mean* of
  the two critics here, whatever `q_agg` says), alpha without gradient.
- temperature: alpha = exp(log_alpha), starting at 1; loss alpha * (H - target_entropy) with
  H = -mean sg(log pi(a|s)), so alpha grows while the entropy is below the target;
  target_entropy defaults to -0.5 * action_dim (`target_entropy_multiplier`).
One Adam step on critic, actor and log_alpha together; Polyak averaging of the critic's target.

The actor is a Gaussian on an MLP trunk with a mean head and (`state_dependent_std`) a log-std
head, both last layers initialised at scale `actor_fc_scale`; log std clipped to [-5, 2]; the
sample is squashed by tanh (`tanh_squash`), its log density corrected by the tanh Jacobian.

Acting: `sample_actions` is the policy's mode tanh(mean), what the authors' evaluation runs
(temperature 0); `explore_actions` samples the policy (temperature 1), what their online loop
runs in the environment. It is an optional hook of the agent contract for online training.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from flowrl.kit import agent_state as st
from flowrl.kit import distributions
from flowrl.kit.encoders import with_encoders
from flowrl.kit.losses import td_loss
from flowrl.kit.networks import MLP, Ensemble, apply_named as _apply, xavier_uniform

DYNAMIC_KEYS = ('lr', 'discount', 'tau', 'target_entropy')


class GaussianActor(nn.Module):
    """Mean and log std of a diagonal Gaussian from an MLP trunk (every hidden layer activated)."""

    hidden_dims: tuple
    action_dim: int
    layer_norm: bool = False
    state_dependent_std: bool = True
    final_init_scale: float = 0.01

    @nn.compact
    def __call__(self, observations):
        features = MLP(self.hidden_dims, None, self.layer_norm)(observations)
        mean = nn.Dense(self.action_dim, kernel_init=xavier_uniform(self.final_init_scale))(features)
        if self.state_dependent_std:
            log_std = nn.Dense(self.action_dim, kernel_init=xavier_uniform(self.final_init_scale))(features)
        else:  # one learned log std per action dimension
            log_std = jnp.broadcast_to(self.param('log_stds', nn.initializers.zeros, (self.action_dim,)), mean.shape)
        return mean, jnp.clip(log_std, *distributions.LOG_STD_RANGE)


@with_encoders
def networks(config):
    """The agent's network definitions (static: built from the static config)."""
    return dict(
        critic=Ensemble(config.value_hidden_dims, num=2, layer_norm=config.layer_norm),
        actor=GaussianActor(config.actor_hidden_dims, config.action_dim, config.actor_layer_norm,
                            config.state_dependent_std, config.actor_fc_scale),
    )


def target_entropy(config, action_dim: int) -> float:
    """`target_entropy`, or -target_entropy_multiplier * action_dim when it is None."""
    if config.target_entropy is None:
        return -config.target_entropy_multiplier * action_dim
    return float(config.target_entropy)


def init(rng, example_batch, config):
    """Initial state for observations/actions shaped like `example_batch`; alpha starts at 1."""
    # A fresh ConfigDict: a command-line value ('-3') may have typed the None default as an int.
    resolved = target_entropy(config, example_batch['actions'].shape[-1])
    config = ml_collections.ConfigDict(dict(config.to_dict(), target_entropy=resolved))
    return st.init_state(networks, jax.random.split(rng), example_batch, config,
                         dict(critic=st.STATE_ACTION, actor=st.STATE), target_names=('critic',),
                         dynamic_keys=DYNAMIC_KEYS, extra_params=dict(alpha=dict(log_alpha=jnp.zeros((), jnp.float32))))


def policy_sample(nets, params, config, observations, rng):
    """(actions, log pi(actions|s)): a reparameterised sample of the actor at `params`."""
    mean, log_std = _apply(nets, 'actor', params, observations)
    return distributions.sample_and_log_prob(mean, log_std, rng, config.tanh_squash)


def temperature(params):
    return jnp.exp(params['alpha']['log_alpha'])


def critic_target(next_q, next_log_probs, rewards, masks, discount, alpha, backup_entropy: bool):
    """r + discount * mask * Qbar(s', a'), minus discount * mask * alpha * log pi(a'|s') if `backup_entropy`."""
    target = rewards + discount * masks * next_q
    if backup_entropy:
        target = target - discount * masks * alpha * next_log_probs
    return target


def critic_loss(nets, params, target_params, hparams, config, batch, rng):
    """TD loss of both critics; the next action comes from the current actor (moves Q only)."""
    frozen = jax.lax.stop_gradient(params)
    next_actions, next_log_probs = policy_sample(nets, frozen, config, batch['next_observations'], rng)
    next_q = st.aggregate_q(_apply(nets, 'critic', target_params, batch['next_observations'], next_actions),
                            config.q_agg)
    target = critic_target(next_q, next_log_probs, batch['rewards'], batch['masks'], hparams['discount'],
                           temperature(frozen), config.backup_entropy)
    qs = _apply(nets, 'critic', params, batch['observations'], batch['actions'])
    return td_loss(qs, target)


def temperature_loss(alpha, log_probs, target_entropy_value):
    """alpha * (H - target), H = -mean sg(log pi): its gradient raises alpha while H < target."""
    entropy = -jnp.mean(jax.lax.stop_gradient(log_probs))
    return alpha * (entropy - target_entropy_value)


def actor_and_temperature_loss(nets, params, hparams, config, batch, rng):
    """Actor: mean(sg(alpha) log pi - mean_k Q_k) through frozen critics; temperature loss on log_alpha."""
    observations = batch['observations']
    frozen = jax.lax.stop_gradient(params)
    mean, log_std = _apply(nets, 'actor', params, observations)
    actions, log_probs = distributions.sample_and_log_prob(mean, log_std, rng, config.tanh_squash)
    q = jnp.mean(_apply(nets, 'critic', frozen, observations, actions), axis=0)
    actor = jnp.mean(temperature(frozen) * log_probs - q)
    alpha = temperature(params)
    alpha_loss = temperature_loss(alpha, log_probs, hparams['target_entropy'])
    return actor + alpha_loss, {
        'actor/loss': actor, 'actor/alpha_loss': alpha_loss, 'actor/alpha': alpha,
        'actor/entropy': -log_probs.mean(), 'actor/std': jnp.exp(log_std).mean(), 'actor/q': q.mean()}


total_loss = st.critic_and_actor_loss(networks, critic_loss, actor_and_temperature_loss)


def update(state, batch, rng):
    """One Adam step on critic, actor and temperature, then the critic's Polyak target update."""
    return st.gradient_step(state, total_loss, batch, rng)


def sample_actions(state, observations, rng):
    """The policy's mode tanh(mean) (the authors' evaluation; `rng` is unused but kept for the contract)."""
    del rng
    mean, _ = _apply(networks(state.config), 'actor', state.params, observations)
    return jnp.tanh(mean) if state.config.tanh_squash else jnp.clip(mean, -1, 1)


def explore_actions(state, observations, rng):
    """A sample of the policy, clipped to [-1, 1] (the authors' online environment steps)."""
    actions, _ = policy_sample(networks(state.config), state.params, state.config, observations, rng)
    return jnp.clip(actions, -1, 1)


def get_config():
    return ml_collections.ConfigDict(dict(
        agent_name='sac',
        encoder=None,  # Image encoder of every network for pixel observations (flowrl.kit.encoders), e.g. 'impala_small'.
        lr=3e-4,  # Adam learning rate of critic, actor and temperature (dynamic).
        batch_size=256,  # Transitions per update.
        actor_hidden_dims=(512, 512, 512, 512),  # Actor MLP trunk.
        value_hidden_dims=(512, 512, 512, 512),  # Critic MLPs.
        layer_norm=True,  # LayerNorm in the critics.
        actor_layer_norm=False,  # LayerNorm in the actor's trunk.
        discount=0.99,  # Discount factor (dynamic).
        tau=0.005,  # Target critic Polyak rate (dynamic).
        # Entropy the temperature steers toward (dynamic); None: -target_entropy_multiplier * action_dim.
        target_entropy=ml_collections.config_dict.placeholder(float),
        target_entropy_multiplier=0.5,  # See target_entropy.
        tanh_squash=True,  # Squash the Gaussian sample with tanh (else actions are clipped when acting).
        state_dependent_std=True,  # Log std from a head on the trunk (else one learned value per dimension).
        actor_fc_scale=0.01,  # Init scale of the actor's mean and log-std heads (initial actions near 0, std near 1).
        q_agg='min',  # How the TD target combines the two target critics: 'min' or 'mean'.
        backup_entropy=False,  # Subtract discount * mask * alpha * log pi(a'|s') in the TD target.
    ))
