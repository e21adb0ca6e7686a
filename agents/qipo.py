"""QIPO: Q-weighted iterative policy optimisation with energy-weighted flow matching
(Zhang, Zhang & Gu, 2025).

The flow's endpoint is trained towards pi(a|s) ∝ pi_beta(a|s) exp(beta Q(s, a)) by weighting each
support action's conditional flow-matching error with a softmax of beta Q over the support set of
its state. Three phases, driven by `state.step`:

1. steps [0, bc_steps): behaviour warm-up, plain BC flow matching on the dataset action.
2. steps [bc_steps, bc_steps + critic_steps): the flow keeps cloning the behaviour while the twin
   critics learn by in-support softmax Q-learning: M actions a'_j from the current (= behaviour)
   flow at s', V(s') = sum_j softmax_j(critic_beta Qbar(s', a'_j)) Qbar(s', a'_j), Qbar = min of
   the target critics, y = r + gamma m V(s').
3. afterwards: critics frozen; support set = dataset action + M actions of a *snapshot* of the
   policy, weights softmax_j(beta min_k Q_k(s, a_j)) on the critic's raw Q (the paper's weights;
   `normalize_q=True` divides Q by its typical per-state spread first, see support_weights),
   loss mean_s sum_j w_j |v(s, x_t^j, t_j) - (a_j - x0_j)|^2. The snapshot is renewed every
   `renew_period` updates (first at the start of phase 3, so period l trains towards
   pi_{l} ∝ pi_{l-1} exp(beta Q) ≈ pi_beta exp(l beta Q)).

Each phase has its own update (`phase_updates`): the training loop ends its compiled chunks at
phase starts and runs the phase's update alone, so phase 1 costs what flow BC costs and only
phases 2 and 3 pay for their M x flow_steps support draws. `update` dispatches on the step with
`lax.switch` for users who call it directly.

Support sets (`support`): 'dataset' (default) draws them for every dataset row once per renewal
(phase 2: at its start, at every next state; phase 3: at each renewal, the snapshot's actions and
their min-Q at every state), keeps them in `state.extras` and lets the updates gather their
batch's rows (`dataset_work`, an agent-contract extension); 'batch' draws them for each batch.
Both define the same weights for the same support actions; batches without row indices (online,
validation) draw per batch in either mode. A run whose phases would not happen is refused, or
with `phase_scale='auto'` the lengths are scaled to it (`fit_schedule`; docs/ALGORITHMS.md, "QIPO"). "Frozen" means the critics' *update* is discarded
(params kept as they were before the optimizer step) and their target is no longer averaged:
masking only the gradient would let Adam's momentum keep moving them. Acting: Euler sampling of
the flow, no guidance.
"""

import jax
import jax.numpy as jnp
import ml_collections

from flowrl.kit import agent_state as st
from flowrl.kit.encoders import apply_head, repeated_features, with_encoders
from flowrl.errors import UserError
from flowrl.kit.flow import euler_from_features, flow_matching_errors, sample_flow
from flowrl.kit.losses import td_loss
from flowrl.kit.networks import Ensemble, VelocityField, apply_named as _apply
from flowrl.kit.dataset_work import ROWS_KEY, DatasetWork, fill_rows

DYNAMIC_KEYS = ('lr', 'beta', 'discount', 'tau', 'critic_beta')
Q_SCALE_EPS = 1e-6


@with_encoders
def networks(config):
    """The agent's network definitions (static: built from the static config)."""
    return dict(
        critic=Ensemble(config.value_hidden_dims, num=2, layer_norm=config.layer_norm),
        actor_flow=VelocityField(config.actor_hidden_dims, config.action_dim, config.actor_layer_norm),
    )


def init(rng, example_batch, config):
    """Initial state; the policy snapshot (in `extras`) starts as a copy of the flow."""
    state = st.init_state(networks, jax.random.split(rng, 2), example_batch, config,
                          dict(critic=st.STATE_ACTION, actor_flow=st.FLOW),
                          target_names=('critic',), dynamic_keys=DYNAMIC_KEYS)
    return state.replace(extras=dict(snapshot=state.params['actor_flow']))


def _tree_where(condition, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def policy_start(config):
    """First update of phase 3."""
    return config.bc_steps + config.critic_steps


def in_critic_phase(step, config):
    return (step >= config.bc_steps) & (step < policy_start(config))


def in_policy_phase(step, config):
    return step >= policy_start(config)


def renew_snapshot(state):
    """snapshot <- current flow at the start of phase 3 and every `renew_period` updates after."""
    since = state.step - policy_start(state.config)
    renew = (since >= 0) & (since % state.config.renew_period == 0)
    snapshot = _tree_where(renew, state.params['actor_flow'], state.extras['snapshot'])
    return state.replace(extras={**state.extras, 'snapshot': snapshot})


def support_weights(q, temperature, normalize):
    """softmax_j(temperature * q_j) over the last axis: the paper's energy weights on the raw Q
    (the default), for which the tilt pi_l ∝ pi_beta exp(l beta Q) holds with the paper's beta.
    Option `normalize`: q is first divided by c, the batch mean of the per-state std of q over
    the support (no gradient), so the temperature is in units of the typical Q spread among a
    state's candidate actions. That makes one value transfer across reward scales, but it is
    not the paper's beta, and the tilt becomes exp(l beta Q / c) with c changing as training goes."""
    scale = 1.0
    if normalize:
        scale = jax.lax.stop_gradient(jnp.mean(jnp.std(q, axis=-1)) + Q_SCALE_EPS)
    return jax.nn.softmax(temperature * q / scale, axis=-1)


def draw_support_actions(nets, flow_params, observations, num: int, config, rng):
    """`num` clipped Euler samples per state from the flow `flow_params`, no gradient: [B, num, A]."""
    flow, frozen = nets['actor_flow'], jax.lax.stop_gradient(flow_params)
    features = repeated_features(flow, frozen, observations, num, axis=1)
    noises = jax.random.normal(rng, features.shape[:-1] + (config.action_dim,))
    return euler_from_features(flow, frozen, features, noises, config.flow_steps)


def critic_loss(nets, params, target_params, hparams, config, batch, next_actions):
    """In-support softmax Q-learning: V(s') = softmax-weighted mean of min target Q over the support."""
    critic, target = nets['critic'], target_params['critic']
    next_features = repeated_features(critic, target, batch['next_observations'], next_actions.shape[1], axis=1)
    next_q = jnp.min(apply_head(critic, target, next_features, next_actions), axis=0)  # [B, M]
    weights = support_weights(next_q, hparams['critic_beta'], config.normalize_q)
    next_v = jnp.sum(weights * next_q, axis=-1)
    qs = _apply(nets, 'critic', params, batch['observations'], batch['actions'])
    loss, info = td_loss(qs, batch['rewards'] + hparams['discount'] * batch['masks'] * next_v)
    return loss, {**info, 'critic/next_v': next_v.mean()}


def bc_loss(nets, params, batch, rng):
    """Plain flow matching on the dataset action (phases 1 and 2). Moves the velocity field only."""
    observations = batch['observations']
    loss = jnp.mean(flow_matching_errors(lambda x, t: _apply(nets, 'actor_flow', params, observations, x, t),
                                         batch['actions'], rng))
    return loss, {'actor/loss': loss, 'actor/bc_loss': loss}


def support_q(nets, critic_params, observations, support):
    """min_k Q_k(s, a_j) of the frozen critics over each state's support actions [B, J, A]: [B, J]."""
    critic, frozen = nets['critic'], jax.lax.stop_gradient(critic_params)
    critic_features = repeated_features(critic, frozen, observations, support.shape[1], axis=1)
    return jnp.min(apply_head(critic, frozen, critic_features, support), axis=0)


def policy_loss(nets, params, hparams, config, batch, snapshot_actions, rng, q=None):
    """Q-weighted flow matching over {dataset action} + M snapshot actions (phase 3). Moves the
    velocity field only (the critic is frozen and read without gradient). `q` [B, M + 1]: the
    support's `support_q` when it was stored with the support (support='dataset'), else computed."""
    observations = batch['observations']
    support = jnp.concatenate([batch['actions'][:, None], snapshot_actions], axis=1)
    if q is None:
        q = support_q(nets, params['critic'], observations, support)  # [B, M + 1]
    weights = support_weights(q, hparams['beta'], config.normalize_q)
    flow, flow_params = nets['actor_flow'], params['actor_flow']
    flow_features = repeated_features(flow, flow_params, observations, support.shape[1], axis=1)
    errors = flow_matching_errors(lambda x, t: apply_head(flow, flow_params, flow_features, x, t), support, rng)
    loss = jnp.mean(jnp.sum(weights * errors, axis=-1))
    return loss, {'actor/loss': loss, 'actor/bc_loss': jnp.mean(errors[:, 0]),
                  'actor/data_weight': jnp.mean(weights[:, 0]),
                  'actor/max_weight': jnp.mean(jnp.max(weights, axis=-1)),
                  'actor/support_q': jnp.mean(q)}


# Every phase reports every metric (0 where a phase does not compute it), so metrics keep one
# structure across phases: lax.switch needs it, and so do train.csv's columns.
METRICS = ('critic/loss', 'critic/q_mean', 'critic/q_max', 'critic/q_min', 'critic/next_v', 'actor/loss',
           'actor/bc_loss', 'actor/data_weight', 'actor/max_weight', 'actor/support_q', 'actor/phase')


def behaviour_phase_loss(params, state, batch, rng):
    """Phase 1: BC flow matching alone."""
    return bc_loss(networks(state.config), params, batch, rng)


def stored(state, batch) -> bool:
    """Whether this update reads its support from the stored sets: support='dataset' and a batch
    that names its dataset rows (the training loop's batches; online, validation and users' own
    batches draw their support per batch)."""
    return ROWS_KEY in batch and SUPPORT_ACTIONS in state.extras


def critic_phase_loss(params, state, batch, rng):
    """Phase 2: BC flow matching + in-support softmax Q-learning, the support of s' drawn from the
    current (behaviour) flow, or stored: drawn at every next state when phase 2 began."""
    nets, config = networks(state.config), state.config
    sample_rng, flow_rng = jax.random.split(rng)
    if stored(state, batch):
        next_actions = state.extras[SUPPORT_ACTIONS][batch[ROWS_KEY], :config.critic_support]
    else:
        next_actions = draw_support_actions(nets, params['actor_flow'], batch['next_observations'],
                                            config.critic_support, config, sample_rng)
    c_loss, c_info = critic_loss(nets, params, state.target_params, state.hparams, config, batch, next_actions)
    a_loss, a_info = bc_loss(nets, params, batch, flow_rng)
    return c_loss + a_loss, {**c_info, **a_info}


def policy_phase_loss(params, state, batch, rng):
    """Phase 3: Q-weighted flow matching, the support drawn from the snapshot at s, or stored with
    its Q: drawn at every state when the snapshot was last renewed."""
    nets, config = networks(state.config), state.config
    sample_rng, flow_rng = jax.random.split(rng)
    if stored(state, batch):
        rows = batch[ROWS_KEY]
        return policy_loss(nets, params, state.hparams, config, batch,
                           state.extras[SUPPORT_ACTIONS][rows, :config.policy_support], flow_rng,
                           q=state.extras[SUPPORT_Q][rows])
    snapshot_actions = draw_support_actions(nets, state.extras['snapshot'], batch['observations'],
                                            config.policy_support, config, sample_rng)
    return policy_loss(nets, params, state.hparams, config, batch, snapshot_actions, flow_rng)


def _phase_update(state, loss_fn, batch, rng, phase: int):
    """One Adam step on all params with `loss_fn`; the critics (and their targets) change in
    phase 2 only. Outside it their gradient is zero, and their params are kept as they were:
    masking the gradient alone would let Adam's momentum keep moving them."""
    grads, info = jax.grad(loss_fn, has_aux=True)(state.params, state, batch, rng)
    new_state = st.apply_gradients(state, grads)
    if phase == 2:
        new_state = st.update_targets(new_state, state.hparams['tau'])
    else:
        new_state = new_state.replace(params={**new_state.params, 'critic': state.params['critic']})
    info = {key: info.get(key, jnp.zeros((), jnp.float32)) for key in METRICS}
    return new_state, {**info, 'actor/phase': jnp.float32(phase)}


def update_behaviour_phase(state, batch, rng):
    return _phase_update(state, behaviour_phase_loss, batch, rng, phase=1)


def update_critic_phase(state, batch, rng):
    return _phase_update(state, critic_phase_loss, batch, rng, phase=2)


def update_policy_phase(state, batch, rng):
    return _phase_update(renew_snapshot(state), policy_phase_loss, batch, rng, phase=3)


def phase_updates(config):
    """Agent-contract extension (flowrl.engine.training.update_phases): the first step of each phase and
    its update. The training loop runs each phase's own compiled update, so phases 1 and 2 never
    pay for phase 3's support draws, nor phase 1 for phase 2's."""
    return ((0, update_behaviour_phase), (config.bc_steps, update_critic_phase),
            (policy_start(config), update_policy_phase))


# ---- Stored support sets (support='dataset'): the agent-contract extension `dataset_work`.

SUPPORTS = ('batch', 'dataset')
SUPPORT_ACTIONS, SUPPORT_Q = 'support_actions', 'support_q'  # state.extras keys, one row per dataset row


def support_steps(config, first: int, last: int) -> list:
    """Agent steps in [first, last) before whose update the stored supports are drawn: the start
    of phase 2 (the behaviour flow is trained by then: one draw at every next state serves the
    whole phase) and every snapshot renewal of phase 3 (its start and every renew_period after)."""
    steps = [config.bc_steps] if config.critic_steps > 0 and first <= config.bc_steps < last else []
    start, period = policy_start(config), config.renew_period
    first_renewal = start if first <= start else start + -(-(first - start) // period) * period
    return steps + list(range(first_renewal, last, period))


def support_arrays(config, rows: int) -> dict:
    """Per member: M = max(critic_support, policy_support) actions per dataset row (phase 2 uses
    the first critic_support at the next state, phase 3 the first policy_support at the state)
    and, for phase 3, min_k Q_k of the dataset action and the snapshot's actions."""
    width = max(config.critic_support, config.policy_support)
    return {SUPPORT_ACTIONS: jax.ShapeDtypeStruct((rows, width, config.action_dim), jnp.float32),
            SUPPORT_Q: jax.ShapeDtypeStruct((rows, config.policy_support + 1), jnp.float32)}


def draw_next_state_supports(state, dataset, rng):
    """Phase 2's stored support: critic_support actions of the current flow at every next state."""
    nets, config = networks(state.config), state.config

    def block(transitions, rng):
        return {SUPPORT_ACTIONS: draw_support_actions(nets, state.params['actor_flow'],
                                                      transitions['next_observations'], config.critic_support,
                                                      config, rng)}

    arrays = {SUPPORT_ACTIONS: state.extras[SUPPORT_ACTIONS]}
    return state.replace(extras={**state.extras, **fill_rows(arrays, block, dataset, rng, config.support_block_rows)})


def draw_policy_supports(state, dataset, rng):
    """Phase 3's stored support at a renewal: the snapshot renewed (as the update of this step
    would), policy_support of its actions at every state and min_k Q_k of {dataset action} + them."""
    state = renew_snapshot(state)
    nets, config = networks(state.config), state.config

    def block(transitions, rng):
        actions = draw_support_actions(nets, state.extras['snapshot'], transitions['observations'],
                                       config.policy_support, config, rng)
        support = jnp.concatenate([transitions['actions'][:, None], actions], axis=1)
        return {SUPPORT_ACTIONS: actions,
                SUPPORT_Q: support_q(nets, state.params['critic'], transitions['observations'], support)}

    arrays = {k: state.extras[k] for k in (SUPPORT_ACTIONS, SUPPORT_Q)}
    return state.replace(extras={**state.extras, **fill_rows(arrays, block, dataset, rng, config.support_block_rows)})


def support_program(config, step: int):
    """The dataset work due before the update of agent step `step`."""
    return draw_policy_supports if step >= policy_start(config) else draw_next_state_supports


def dataset_work(config):
    """Agent-contract extension (flowrl.kit.dataset_work.DatasetWork): with support='dataset' the support
    sets are drawn for the whole dataset at phase 2's start and at every renewal, kept per row in
    `state.extras`, and the updates gather their batch's rows; with support='batch', None (every
    update draws its own support)."""
    if config.support not in SUPPORTS:
        raise UserError(f"--agent.support must be one of {', '.join(SUPPORTS)}, got {config.support!r}.")
    if config.support == 'batch':
        return None
    return DatasetWork(steps=lambda first, last: support_steps(config, first, last), arrays=support_arrays,
                       program=lambda step: support_program(config, step),
                       what="QIPO's stored support sets (--agent.support=dataset)",
                       instead='pass --agent.support=batch to draw them per batch instead (slower), or use a '
                               'device with more memory.')


SCHEDULE_STEPS = 1_000_000  # the run length the default phase lengths are written for
PHASE_SCALES = ('off', 'auto')


def scaled_schedule(config, last_step: int) -> dict:
    """bc_steps, critic_steps and renew_period taken as written for SCHEDULE_STEPS updates, scaled
    to a run that ends at agent step `last_step` (the defaults become 20 % / 30 % / 5 %)."""
    factor = last_step / SCHEDULE_STEPS
    return dict(bc_steps=round(config.bc_steps * factor), critic_steps=round(config.critic_steps * factor),
                renew_period=max(1, round(config.renew_period * factor)))


def fit_schedule(config, first_step: int, last_step: int) -> dict:
    """Agent-contract extension (flowrl.run.settings.fit_schedules): the phases must happen in a run
    whose updates take the state from step `first_step` to `last_step`: phase 3 must start before
    the run ends and renew its snapshot at least once after its start (with a renewal period
    longer than the phase it trains towards pi_beta exp(beta Q) once and stops iterating), else
    the run is refused, naming values that fit. With `phase_scale='auto'` the lengths are first
    scaled to the run (`scaled_schedule`). Returns the config values it changes."""
    if config.phase_scale not in PHASE_SCALES:
        raise UserError(f"--agent.phase_scale must be one of {', '.join(PHASE_SCALES)}, got {config.phase_scale!r}.")
    changes = scaled_schedule(config, last_step) if config.phase_scale == 'auto' else {}
    bc_steps, critic_steps, renew_period = (changes.get(key, config[key])
                                            for key in ('bc_steps', 'critic_steps', 'renew_period'))
    if bc_steps + critic_steps + renew_period < last_step:
        return changes
    what = (f'phase 3 starts at bc_steps + critic_steps = {bc_steps + critic_steps:,} and renews its snapshot '
            f'renew_period = {renew_period:,} updates later')
    if changes:
        raise UserError(f"QIPO's phases scaled to a run that ends at update {last_step:,} still do not fit it "
                        f'({what}); train for more updates.')
    fitting = ', '.join(f'{k}={v}' for k, v in scaled_schedule(config, last_step).items())
    raise UserError(f"QIPO's phases do not fit a run that ends at update {last_step:,} ({what}); set values that "
                    f'fit (e.g. {fitting}) or pass --agent.phase_scale=auto to scale them to the run.')


def update(state, batch, rng):
    """The update of the phase `state.step` is in (a lax.switch: on one state it runs that phase
    alone; vmapped over states it computes all three and selects, which is why the training
    loop uses `phase_updates` instead)."""
    config = state.config
    index = in_critic_phase(state.step, config).astype(jnp.int32) + 2 * in_policy_phase(state.step, config)
    return jax.lax.switch(index, [update_behaviour_phase, update_critic_phase, update_policy_phase],
                          state, batch, rng)


def sample_actions(state, observations, rng):
    """K-step Euler sampling of the flow from N(0, I), no guidance, clipped to the action box."""
    net = networks(state.config)['actor_flow']
    return sample_flow(net, state.params['actor_flow'], observations, rng, state.config.flow_steps)


def get_config():
    return ml_collections.ConfigDict(dict(
        agent_name='qipo',
        encoder=None,  # Image encoder of every network for pixel observations (flowrl.kit.encoders), e.g. 'impala_small'.
        lr=3e-4,  # Adam learning rate (dynamic).
        batch_size=256,  # Transitions per update.
        actor_hidden_dims=(512, 512, 512, 512),  # Velocity field MLP.
        value_hidden_dims=(512, 512, 512, 512),  # Critic MLPs.
        layer_norm=True,  # LayerNorm in the critics.
        actor_layer_norm=False,  # LayerNorm in the velocity field.
        discount=0.99,  # Discount factor (dynamic).
        tau=0.005,  # Target critic Polyak rate (dynamic; applied in phase 2 only).
        beta=3.0,  # Phase-3 energy temperature: weights softmax(beta Q) (dynamic; paper: 3).
        critic_beta=1.0,  # Phase-2 in-support softmax temperature beta_Q (dynamic; our choice, not published).
        normalize_q=False,  # False: the paper's softmax(beta Q) on raw Q; True: Q over its spread (support_weights).
        critic_support=16,  # M next actions per state for the critic's softmax value (paper: 16; 32 antmaze).
        policy_support=16,  # M snapshot actions per state added to the dataset action in phase 3 (paper: 16).
        flow_steps=10,  # Euler steps for support actions and for acting.
        # 'dataset': support sets drawn for every dataset row at phase 2's start and at each renewal and
        # stored in the state (memory: rows x max(M) x action_dim floats); 'batch': drawn for each batch.
        support='dataset',
        support_block_rows=4096,  # Dataset rows per block when drawing stored support sets.
        # Phase lengths (the paper's are not public). They fit the default 1M updates: BC warm-up
        # 20 %, critic 30 %, then 500k policy updates with a renewal every 50k = 10 % of phase 3,
        # the paper's ratio (100 epochs, renewed every 10).
        bc_steps=200_000,  # Phase 1: behaviour warm-up updates.
        critic_steps=300_000,  # Phase 2: critic updates (flow keeps cloning); critics frozen after.
        renew_period=50_000,  # Phase 3: updates between snapshot renewals.
        # 'off': a run too short for the phases above is refused (fit_schedule); 'auto': the three
        # lengths are scaled by (the run's last update) / 1M, keeping their proportions.
        phase_scale='off',
    ))
