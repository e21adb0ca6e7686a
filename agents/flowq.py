"""FlowQ, reconstructed: energy-guided flow matching after Alles, Chen, van der Smagt & Cseke (2025).

The paper trains a flow towards pi(a|s) ∝ pi_beta(a|s) exp(lambda Q(s, a)) by flow matching alone,
with the critic's guidance in the *training* path, so that acting is plain Euler sampling and the
policy update never samples from the policy (its cost does not depend on `flow_steps`). Its full
text and code are not available to this project: this file is our reconstruction (derivation in
docs/ALGORITHMS.md, "FlowQ"), and what its loss does is narrower than that target.

What the default loss does. For each dataset pair (s, a): g = grad_a Q(s, a) (mean of the twin
critics, critics stop-gradiented), divided by the RMS of g over the batch (`normalize_grad`, a
batch constant); the flow regresses on the Gaussian path from N(0, I) to the point
a + lambda kappa(1) g, with kappa(1) = 1 for the default schedule. The learned policy is therefore
behaviour cloning of *shifted data actions*: every action moves locally uphill on Q by
lambda g / rms(g) (lambda is the RMS shift in action units). Modes are not reweighted (a low-Q
mode keeps its mass), so this matches pi_beta exp(lambda Q) only for small shifts of a locally
Gaussian pi_beta. Two parts are ours, not the paper's: the schedule kappa(t) = t^2
(the paper's schedules give kappa(1) = 0 on the linear path, i.e. no shift at all) and the
normalisation of g.

Derivation:
- Gaussian conditional path p_t(x | a1) = N(t a1, sigma_t^2 I) from noise (t = 0) to the data
  action a1 (t = 1). Guided path p_t(x | a1) exp(lambda h(t) Q(s, x)); a first-order Taylor
  expansion of Q around a1, with g = grad_a Q(s, a1), keeps it Gaussian:
  N(t a1 + lambda kappa(t) g, sigma_t^2 I) with kappa(t) = h(t) sigma_t^2.
- Sample x_t = t a1 + lambda kappa(t) g + sigma_t x0 and regress v(s, x_t, t) on its time
  derivative u_t = a1 + sigma_t' x0 + lambda kappa'(t) g (the Hessian term, from g moving
  with x, is dropped).
- The flow's endpoint is the data action shifted by lambda kappa(1) g.

Selectable alternatives (config keys):
- `schedule`: the paper's h = 't', 't2', 't2_over_1mt' (kappa(1) = 0 on the linear path: behaviour
  cloning), 't2_over_sigma2' (default: kappa(t) = t^2 on any path, kappa(1) = 1; on the linear path
  the bounded target a1 - x0 + 2 lambda t g), or 'learned': kappa_theta(t) = sum_k softmax(w)_k t^k,
  k = 1..4 (h_theta = kappa_theta / sigma_t^2), with kappa(0) = 0 (the source stays N(0, I)) and
  kappa(1) = 1 (lambda keeps its meaning); only the shape of the path in between is learned.
- `path`: 'linear' (sigma_t = 1 - t, default) or 'sqrt' (sigma_t^2 = 1 - t; with 't2_over_1mt'
  this is kappa = t^2 again, but sigma_t' = -1/(2 sigma_t) is unbounded, so t is clamped).
- `normalize_grad=False`: the raw g, i.e. the target pi_beta exp(lambda Q) of the Taylor expansion,
  whose shift scales with the critic's (reward-dependent) gradient.
- `critic` (not specified by the paper): 'iql' by default (expectile V, Q target r + gamma m V(s')),
  so nothing in training samples the policy; 'td' uses TD with K-step flow samples at s'.

Gradients: value loss -> V, critic loss -> Q, flow loss -> velocity field (and the learned
schedule); g is computed with the critic stop-gradiented.
"""

import jax
import jax.numpy as jnp
import ml_collections

from flowrl.kit import agent_state as st
from flowrl.kit.encoders import with_encoders
from flowrl.errors import UserError
from flowrl.kit.flow import sample_flow
from flowrl.kit.losses import critic_loss_from_values, value_and_critic_losses
from flowrl.kit.networks import Ensemble, VelocityField, apply_named as _apply

DYNAMIC_KEYS = ('lr', 'lambda', 'discount', 'tau', 'expectile')
PATHS = ('linear', 'sqrt')
SCHEDULES = ('t', 't2', 't2_over_1mt', 't2_over_sigma2', 'learned')
CRITICS = ('iql', 'td')
LEARNED_SCHEDULE_DEGREE = 4  # kappa_theta mixes t, t^2, t^3, t^4.
SQRT_PATH_MAX_TIME = 1.0 - 1e-3  # bounds |sigma_t'| <= 16 on the 'sqrt' path.
GRAD_NORM_EPS = 1e-6


@with_encoders
def networks(config):
    """The agent's network definitions (static: built from the static config)."""
    nets = dict(
        critic=Ensemble(config.value_hidden_dims, num=2, layer_norm=config.layer_norm),
        actor_flow=VelocityField(config.actor_hidden_dims, config.action_dim, config.actor_layer_norm),
    )
    if config.critic == 'iql':
        nets['value'] = Ensemble(config.value_hidden_dims, num=1, layer_norm=config.layer_norm)
    return nets


def check_config(config):
    for key, allowed in (('path', PATHS), ('schedule', SCHEDULES), ('critic', CRITICS)):
        if config[key] not in allowed:
            raise UserError(f"flowq: {key} must be one of {', '.join(allowed)}; got {config[key]!r}.")


def init(rng, example_batch, config):
    """Initial state for observations/actions shaped like `example_batch`."""
    check_config(config)
    inputs = dict(critic=st.STATE_ACTION, actor_flow=st.FLOW)
    if config.critic == 'iql':
        inputs['value'] = st.STATE
    extra_params = {}
    if config.schedule == 'learned':
        extra_params['schedule'] = dict(logits=jnp.zeros(LEARNED_SCHEDULE_DEGREE, jnp.float32))
    return st.init_state(networks, jax.random.split(rng, 3), example_batch, config, inputs,
                         target_names=('critic',), dynamic_keys=DYNAMIC_KEYS, extra_params=extra_params)


def path_sigma(t, path):
    """Noise scale sigma_t of the conditional path: 1 - t ('linear') or sqrt(1 - t) ('sqrt')."""
    return 1.0 - t if path == 'linear' else jnp.sqrt(1.0 - t)


def kappa(t, config, schedule_params=None):
    """kappa(t) = h(t) sigma_t^2 in closed form, so that h's pole at t = 1 cancels."""
    sigma_squared = path_sigma(t, config.path) ** 2
    if config.schedule == 't':
        return t * sigma_squared
    if config.schedule == 't2':
        return t ** 2 * sigma_squared
    if config.schedule == 't2_over_1mt':  # sigma_t^2 / (1 - t) is 1 - t (linear) or 1 (sqrt).
        return t ** 2 * (1.0 - t if config.path == 'linear' else 1.0)
    if config.schedule == 't2_over_sigma2':
        return t ** 2
    mix = jax.nn.softmax(schedule_params['logits'])
    powers = t[..., None] ** jnp.arange(1, LEARNED_SCHEDULE_DEGREE + 1, dtype=t.dtype)
    return jnp.sum(mix * powers, axis=-1)


def guided_path_point(actions, noises, t, shift, config, schedule_params=None):
    """(x_t, u_t) on the guided Gaussian path; `shift` = lambda g. Derivatives in t by jvp."""
    ones = jnp.ones_like(t)
    sigma, dsigma = jax.jvp(lambda s: path_sigma(s, config.path), (t,), (ones,))
    kap, dkap = jax.jvp(lambda s: kappa(s, config, schedule_params), (t,), (ones,))
    x_t = t * actions + kap * shift + sigma * noises
    target = actions + dsigma * noises + dkap * shift
    return x_t, target


def q_action_gradient(nets, critic_params, observations, actions):
    """g = grad_a of the mean of the twin critics, per sample (critic params get no gradient)."""
    critic_params = jax.lax.stop_gradient(critic_params)

    def summed_q(a):  # samples are independent, so the gradient of the sum is per sample.
        return jnp.mean(nets['critic'].apply({'params': critic_params}, observations, a), axis=0).sum()

    return jax.grad(summed_q)(actions)


def critic_loss(nets, params, target_params, hparams, config, batch, rng):
    """IQL value + critic losses, or (critic='td') TD with K-step flow samples at s'."""
    def apply(name, p, *inputs):
        return _apply(nets, name, p, *inputs)

    if config.critic == 'iql':
        return value_and_critic_losses(apply, params, target_params, hparams, batch)
    next_obs = batch['next_observations']
    frozen = jax.lax.stop_gradient(params['actor_flow'])
    next_actions = sample_flow(nets['actor_flow'], frozen, next_obs, rng, config.flow_steps)
    next_q = st.aggregate_q(apply('critic', target_params, next_obs, next_actions), config.q_agg)
    qs = apply('critic', params, batch['observations'], batch['actions'])
    return critic_loss_from_values(qs, next_q, batch['rewards'], batch['masks'], hparams['discount'])


def actor_loss(nets, params, hparams, config, batch, rng):
    """Energy-guided flow matching at the data actions: no policy sampling, O(1) in flow_steps."""
    observations, actions = batch['observations'], batch['actions']
    grad_q = q_action_gradient(nets, params['critic'], observations, actions)
    grad_rms = jnp.sqrt(jnp.mean(grad_q ** 2))
    if config.normalize_grad:  # a batch constant: the target is pi_beta exp(lambda Q / c).
        grad_q = grad_q / (grad_rms + GRAD_NORM_EPS)
    shift = hparams['lambda'] * grad_q

    # Same draws as flow.sample_path_points, so lambda = 0 is exactly the BC flow loss.
    noise_rng, time_rng = jax.random.split(rng)
    noises = jax.random.normal(noise_rng, actions.shape, actions.dtype)
    t = jax.random.uniform(time_rng, actions.shape[:-1] + (1,), actions.dtype)
    if config.path == 'sqrt':
        t = jnp.minimum(t, SQRT_PATH_MAX_TIME)
    x_t, target = guided_path_point(actions, noises, t, shift, config, params.get('schedule'))
    velocity = _apply(nets, 'actor_flow', params, observations, x_t, t)
    loss = jnp.mean((velocity - target) ** 2)

    end_kappa = kappa(jnp.ones(()), config, params.get('schedule'))
    return loss, {'actor/loss': loss, 'actor/grad_q_rms': grad_rms, 'actor/kappa_end': end_kappa,
                  'actor/endpoint_shift': end_kappa * jnp.sqrt(jnp.mean(shift ** 2))}


total_loss = st.critic_and_actor_loss(networks, critic_loss, actor_loss)


def update(state, batch, rng):
    """One gradient step on critic (+ value) and flow losses, then the critic's Polyak update."""
    return st.gradient_step(state, total_loss, batch, rng)


def sample_actions(state, observations, rng):
    """K-step Euler sampling of the flow from N(0, I), no guidance, clipped to the action box."""
    net = networks(state.config)['actor_flow']
    return sample_flow(net, state.params['actor_flow'], observations, rng, state.config.flow_steps)


def get_config():
    config = ml_collections.ConfigDict(dict(
        agent_name='flowq',
        encoder=None,  # Image encoder of every network for pixel observations (flowrl.kit.encoders), e.g. 'impala_small'.
        lr=3e-4,  # Adam learning rate (dynamic).
        batch_size=256,  # Transitions per update.
        actor_hidden_dims=(512, 512, 512, 512),  # Velocity field MLP.
        value_hidden_dims=(512, 512, 512, 512),  # Critic and value MLPs.
        layer_norm=True,  # LayerNorm in the critic and value networks.
        actor_layer_norm=False,  # LayerNorm in the velocity field.
        discount=0.99,  # Discount factor (dynamic).
        tau=0.005,  # Target critic Polyak rate (dynamic).
        expectile=0.9,  # IQL expectile of the value function (dynamic; used when critic='iql').
        critic='iql',  # 'iql' (expectile V; no policy samples in training) or 'td' (K-step flow samples at s').
        q_agg='min',  # How critic='td' combines the two target critics: 'min' or 'mean'.
        path='linear',  # Conditional path noise scale: 'linear' (sigma = 1 - t) or 'sqrt' (sigma^2 = 1 - t).
        schedule='t2_over_sigma2',  # h(t): 't', 't2', 't2_over_1mt', 't2_over_sigma2' (kappa = t^2), 'learned'.
        normalize_grad=True,  # Divide g by its batch RMS, so lambda * kappa(1) is the RMS action shift.
        flow_steps=10,  # Euler steps when acting (and for critic='td' next actions); not used by the actor loss.
    ))
    # 'lambda' is a Python keyword, so it is set by item; `--agent.lambda=0.3` works on main.py.
    config['lambda'] = 0.1  # Energy weight (dynamic): endpoint shift lambda * kappa(1) * g.
    return config
