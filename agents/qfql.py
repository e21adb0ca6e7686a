"""QFQL: Q-guided flow Q-learning (the seed paper): value guidance at inference only.

Training couples nothing: the actor is a plain BC flow v_theta (flow matching) and the twin
critic learns by TD the value of that behaviour flow (its next action is an *unguided*
`flow_steps`-step Euler sample at s', without gradient). Acting integrates the flow plus
guidance from the critic,

    a <- a + (1/K) (v_theta(s, a, t_k) + beta_k grad_a Q(s, a)),   Q = mean of the critics,

the paper's eq. 5 (no clipping by default: its per-task beta values were tuned without it), so
guidance is one step of policy improvement that can be changed on a trained checkpoint.
Math: docs/ALGORITHMS.md, "QFQL".

Inference knobs (all dynamic state leaves, so one compiled sampler vmaps over a stack of
states with different values and changing them never recompiles):
- `guidance` (beta): 0 reproduces flow BC's sampler bit for bit (same noise, same steps; the
  guided velocity is *selected*, not added, when beta_k == 0).
- `guidance_anneal` (a in [-1, 1]): beta_k = beta (1 + a (2 tau_k - 1)) with the step midpoint
  tau_k = (k + 1/2) / K. The weights average to exactly 1 over the K steps, so annealing moves
  guidance between early and late steps without changing its total; a = 1 ramps it up towards
  the action end, where the critic was trained, a = -1 ramps it down.
- `grad_clip` (default `inf`: off, as in the paper's rule): optionally, each sample's grad_a Q
  is rescaled to norm <= grad_clip (the paper's "in practice, we can ... clip ||grad_a Q||"),
  so a step moves at most beta_k * grad_clip / K beyond the flow. Dynamic rather than static
  because, like beta, it only acts at inference and users tune the two together on a trained
  checkpoint.
- Non-finite guard: non-finite gradient entries are zeroed before clipping; a sample whose
  guided action is still non-finite is replaced by its unguided flow sample (zeros if that is
  non-finite too). `sample_actions_with_info` reports how many samples were replaced.

`action_diagnostics` (an optional hook of the agent contract, written to eval.csv at every
evaluation) reports the norms of grad_a Q along the guided sampling trajectory: the paper's own
warning sign (below 10 where QFQL works, ~400 with NaNs on puzzle-3x3 where it fails).
"""

import jax
import jax.numpy as jnp
import ml_collections

from flowrl.kit import agent_state as st
from flowrl.kit.encoders import apply_head, batch_shape, encode, with_encoders
from flowrl.kit.flow import euler_integrate, euler_samples, flow_matching_loss, sample_flow
from flowrl.kit.losses import td_loss
from flowrl.kit.networks import Ensemble, VelocityField, apply_named as _apply

# discount first: it is the value the shared contract test sweeps through `update`.
DYNAMIC_KEYS = ('lr', 'discount', 'tau', 'guidance', 'guidance_anneal', 'grad_clip')


@with_encoders
def networks(config):
    """The agent's network definitions (static: built from the static config)."""
    return dict(
        critic=Ensemble(config.value_hidden_dims, num=2, layer_norm=config.layer_norm),
        actor_bc_flow=VelocityField(config.actor_hidden_dims, config.action_dim, config.actor_layer_norm),
    )


def init(rng, example_batch, config):
    """Initial state for observations/actions shaped like `example_batch`."""
    return st.init_state(networks, jax.random.split(rng), example_batch, config,
                         dict(critic=st.STATE_ACTION, actor_bc_flow=st.FLOW),
                         target_names=('critic',), dynamic_keys=DYNAMIC_KEYS)


def bc_flow_samples(nets, params, config, observations, noises):
    """Unguided Euler samples of the BC flow from `noises`, clipped (flow BC's sampler)."""
    return euler_samples(nets['actor_bc_flow'], params['actor_bc_flow'], observations, noises, config.flow_steps)


def critic_loss(nets, params, target_params, hparams, config, batch, rng):
    """TD loss of both critics; the next action is an unguided flow sample at s' (moves Q only)."""
    next_obs = batch['next_observations']
    frozen = jax.lax.stop_gradient(params['actor_bc_flow'])
    next_actions = sample_flow(nets['actor_bc_flow'], frozen, next_obs, rng, config.flow_steps)
    next_q = st.aggregate_q(_apply(nets, 'critic', target_params, next_obs, next_actions), config.q_agg)
    qs = _apply(nets, 'critic', params, batch['observations'], batch['actions'])
    return td_loss(qs, batch['rewards'] + hparams['discount'] * batch['masks'] * next_q)


def actor_loss(nets, params, hparams, config, batch, rng):
    """Plain flow matching on the dataset actions (moves v_theta only; no Q term; `hparams` and
    `config` are unused, the signature is st.critic_and_actor_loss's)."""
    del hparams, config
    observations = batch['observations']
    loss = flow_matching_loss(lambda x, t: _apply(nets, 'actor_bc_flow', params, observations, x, t),
                              batch['actions'], rng)
    return loss, {'actor/bc_flow_loss': loss}


total_loss = st.critic_and_actor_loss(networks, critic_loss, actor_loss)


def update(state, batch, rng):
    """One gradient step on critic + BC flow losses, then the critic's Polyak target update."""
    return st.gradient_step(state, total_loss, batch, rng)


def guidance_weight(hparams, t, steps: int):
    """beta_k for the Euler step that starts at t = k / K (see the module docstring)."""
    midpoint = t + 0.5 / steps
    return hparams['guidance'] * (1.0 + hparams['guidance_anneal'] * (2.0 * midpoint - 1.0))


def clip_per_sample(grads, max_norm):
    """Rescales each row of `grads` to L2 norm <= max_norm, without overflow or NaN.

    Non-finite entries become finite first (a NaN gradient must not reach the action); the
    norm is taken of the row divided by its largest entry, so 1e30-sized gradients keep their
    direction instead of overflowing to inf.
    """
    grads = jnp.nan_to_num(grads)
    peak = jnp.max(jnp.abs(grads), axis=-1, keepdims=True)
    unit = grads / jnp.where(peak > 0, peak, 1.0)  # largest entry +-1, so 1 <= ||unit|| <= sqrt(d)
    unit_norm = jnp.maximum(jnp.linalg.norm(unit, axis=-1, keepdims=True), 1.0)
    return unit * jnp.minimum(peak, max_norm / unit_norm)


def guidance_terms(nets, params, hparams, config, observations):
    """(x, t) -> (v_theta(s, x, t), raw grad_x mean_k Q_k(s, x), beta_k): the parts of a guided step."""

    # Each network encodes the observations once for all Euler steps (an identity without an encoder).
    critic_features = encode(nets['critic'], params['critic'], observations)
    flow_features = encode(nets['actor_bc_flow'], params['actor_bc_flow'], observations)

    def q_sum(x):  # rows are independent, so the gradient of the sum is each row's own gradient
        return jnp.sum(jnp.mean(apply_head(nets['critic'], params['critic'], critic_features, x), axis=0))

    def terms(x, t):
        v = apply_head(nets['actor_bc_flow'], params['actor_bc_flow'], flow_features, x, t)
        return v, jax.grad(q_sum)(x), guidance_weight(hparams, t, config.flow_steps)

    return terms


def guided_velocity(v, grad_q, beta, grad_clip):
    """v + beta clip(grad_q); the guided term is selected, not added, when beta == 0 (flow BC exactly)."""
    return jnp.where(beta == 0, v, v + beta * clip_per_sample(grad_q, grad_clip))


def guided_field(nets, params, hparams, config, observations):
    """The guided velocity (x, t) -> v_theta(s, x, t) + beta_k clip(grad_x mean_k Q_k(s, x))."""
    terms = guidance_terms(nets, params, hparams, config, observations)
    return lambda x, t: guided_velocity(*terms(x, t), hparams['grad_clip'])


def sample_actions_with_info(state, observations, rng):
    """Guided Euler sampling; returns (actions, {'nonfinite': samples replaced by the guard})."""
    nets, config = networks(state.config), state.config
    noises = jax.random.normal(rng, batch_shape(config, observations) + (config.action_dim,))
    actions = euler_integrate(guided_field(nets, state.params, state.hparams, config, observations),
                              noises, config.flow_steps)
    bad = ~jnp.all(jnp.isfinite(actions), axis=-1, keepdims=True)
    # The fallback costs K more flow passes, so it only runs when some sample needs it (under
    # vmap lax.cond becomes a select and both branches run).
    fallback = jax.lax.cond(jnp.any(bad),
                            lambda: bc_flow_samples(nets, state.params, config, observations, noises),
                            lambda: jnp.zeros_like(actions))
    actions = jnp.where(bad, fallback, actions)
    actions = jnp.where(jnp.isfinite(actions), actions, 0.0)
    return actions, {'nonfinite': jnp.sum(bad.astype(jnp.int32))}


def sample_actions(state, observations, rng):
    """Guided actions in [-1, 1] (see `sample_actions_with_info` for the non-finite count)."""
    return sample_actions_with_info(state, observations, rng)[0]


def action_diagnostics(state, observations, rng):
    """Norms of the raw (unclipped) grad_a Q at every Euler step of the guided sampler, over the
    samples that `sample_actions(state, observations, rng)` draws: mean and max of the finite
    norms, and the fraction of (sample, step) pairs whose gradient is not finite."""
    nets, config = networks(state.config), state.config
    terms = guidance_terms(nets, state.params, state.hparams, config, observations)
    noises = jax.random.normal(rng, batch_shape(config, observations) + (config.action_dim,))
    dt = 1.0 / config.flow_steps  # the Euler grid of flow.euler_integrate

    def step(x, k):
        v, grad_q, beta = terms(x, jnp.full(x.shape[:-1] + (1,), k * dt, x.dtype))
        x = x + guided_velocity(v, grad_q, beta, state.hparams['grad_clip']) * dt
        return x, jnp.linalg.norm(grad_q, axis=-1)

    _, norms = jax.lax.scan(step, noises, jnp.arange(config.flow_steps))
    finite = jnp.isfinite(norms)
    return {'grad_q_norm_mean': jnp.sum(jnp.where(finite, norms, 0.0)) / jnp.maximum(jnp.sum(finite), 1),
            'grad_q_norm_max': jnp.max(jnp.where(finite, norms, 0.0)),
            'grad_q_nonfinite': 1.0 - jnp.mean(finite)}


def get_config():
    return ml_collections.ConfigDict(dict(
        agent_name='qfql',
        encoder=None,  # Image encoder of every network for pixel observations (flowrl.kit.encoders), e.g. 'impala_small'.
        lr=3e-4,  # Adam learning rate (dynamic).
        batch_size=256,  # Transitions per update.
        actor_hidden_dims=(512, 512, 512, 512),  # Velocity-field MLP.
        value_hidden_dims=(512, 512, 512, 512),  # Critic MLPs.
        layer_norm=True,  # LayerNorm in the critics.
        actor_layer_norm=False,  # LayerNorm in the velocity field.
        discount=0.99,  # Discount factor (dynamic).
        tau=0.005,  # Target critic Polyak rate (dynamic).
        q_agg='mean',  # How the TD target combines the two target critics: 'mean' or 'min'.
        flow_steps=10,  # Euler steps, for acting and for the critic's next action.
        guidance=1.0,  # beta: weight of grad_a Q in the acting ODE; 0 = flow BC (dynamic, inference only).
        guidance_anneal=0.0,  # Linear redistribution of beta over the steps in [-1, 1], same total (dynamic).
        grad_clip=float('inf'),  # Optional bound on each ||grad_a Q|| when acting; inf: off, the paper's rule (dynamic).
    ))
