"""The immutable train state every agent returns, and the few operations all agents share.

Config is split in two (docs/DESIGN.md):
- static: network sizes, flow steps, names, booleans. Kept in the state as a non-pytree
  `FrozenConfigDict`, so it is part of the jit cache key and decides the compiled program.
- dynamic: the values users sweep (alpha, discount, tau, guidance, ...). Kept as float32
  pytree leaves in `hparams` (and the learning rate inside the optimizer state through
  `optax.inject_hyperparams`), so one compiled program vmaps over them and changing them
  never recompiles.
"""

from typing import Any, Iterable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from flowrl.errors import UserError

LEARNING_RATE_KEY = 'lr'


class AgentState(flax.struct.PyTreeNode):
    step: jax.Array  # int32: number of updates applied so far
    params: dict  # network name -> params
    target_params: dict  # network name -> Polyak-averaged params (only networks that have one)
    opt_state: Any  # one optimizer over all of `params`
    hparams: dict  # dynamic hyperparameters: float32 scalars (vmappable)
    extras: dict  # agent-specific array state (e.g. QIPO's policy snapshot); may be empty
    config: ml_collections.FrozenConfigDict = flax.struct.field(pytree_node=False)


def make_optimizer(learning_rate) -> optax.GradientTransformation:
    """Adam whose learning rate is a state leaf (vmappable, changeable without recompiling)."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)


def static_config(config, dynamic_keys: Iterable[str], **derived) -> ml_collections.FrozenConfigDict:
    """The config without its dynamic keys, plus derived static values (e.g. action_dim)."""
    values = {k: v for k, v in config.to_dict().items() if k not in set(dynamic_keys)}
    values.update(derived)
    return ml_collections.FrozenConfigDict(values)


def create_state(config, params: dict, *, target_names: Iterable[str], dynamic_keys: Iterable[str],
                 extras: dict | None = None, **derived) -> AgentState:
    """Builds the initial state: optimizer, target copies, dynamic leaves, static config."""
    dynamic_keys = tuple(dynamic_keys)
    hparams = {k: jnp.asarray(config[k], jnp.float32) for k in dynamic_keys if k != LEARNING_RATE_KEY}
    tx = make_optimizer(jnp.asarray(config[LEARNING_RATE_KEY], jnp.float32))
    return AgentState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        target_params={name: params[name] for name in target_names},
        opt_state=tx.init(params),
        hparams=hparams,
        extras=extras or {},
        config=static_config(config, dynamic_keys, **derived),
    )


# Example inputs of each kind of network, by name: batch fields, and 'times' (t = 0, shape [..., 1]).
STATE = ('observations',)  # V(s), a Gaussian or deterministic actor
STATE_ACTION = ('observations', 'actions')  # Q(s, a), a one-step policy mu(s, z)
FLOW = ('observations', 'actions', 'times')  # a velocity field v(s, x, t)


def init_params(nets: dict, rngs, example_batch, inputs: dict) -> dict:
    """Initial params of each network named in `inputs`, in that order, each with the next of
    `rngs`, on the example inputs `inputs[name]` (field names, see FLOW)."""
    actions = example_batch['actions']
    examples = {**example_batch, 'times': jnp.zeros(actions.shape[:-1] + (1,), actions.dtype)}
    return {name: nets[name].init(rng, *(examples[k] for k in fields))['params']
            for (name, fields), rng in zip(inputs.items(), rngs)}


def init_state(networks, rngs, example_batch, config, inputs: dict, *, target_names: Iterable[str],
               dynamic_keys: Iterable[str], extra_params: dict | None = None) -> AgentState:
    """The common `init`: builds `networks(static config)` for the example batch's action size,
    initialises them (`init_params`), adds `extra_params` (params that are not networks), and
    creates the state."""
    dims = dict(action_dim=example_batch['actions'].shape[-1])
    nets = networks(static_config(config, (), **dims))
    params = {**init_params(nets, rngs, example_batch, inputs), **(extra_params or {})}
    return create_state(config, params, target_names=target_names, dynamic_keys=dynamic_keys, **dims)


def apply_gradients(state: AgentState, grads: dict) -> AgentState:
    """One optimizer step on all params (the learning rate is read from the optimizer state)."""
    tx = make_optimizer(0.0)  # the value here is ignored: inject_hyperparams reads opt_state
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                         step=state.step + 1)


def polyak(target, online, tau):
    """target <- tau * online + (1 - tau) * target, leaf by leaf."""
    return jax.tree.map(lambda t, o: tau * o + (1.0 - tau) * t, target, online)


def update_targets(state: AgentState, tau, names: Iterable[str] | None = None) -> AgentState:
    """Polyak-averages the targets of `names` (all target networks by default)."""
    names = tuple(state.target_params) if names is None else tuple(names)
    target_params = dict(state.target_params)
    for name in names:
        target_params[name] = polyak(state.target_params[name], state.params[name], tau)
    return state.replace(target_params=target_params)


def learning_rate(state: AgentState):
    """The current learning rate (a leaf of the optimizer state)."""
    return state.opt_state.hyperparams['learning_rate']


def aggregate_q(qs, how: str):
    """Combines an ensemble axis 0 of Q values: 'mean' or 'min' (config key q_agg)."""
    if how == 'min':
        return jnp.min(qs, axis=0)
    if how == 'mean':
        return jnp.mean(qs, axis=0)
    raise UserError(f"q_agg must be 'mean' or 'min', got {how!r}.")


def critic_and_actor_loss(networks, critic_loss, actor_loss):
    """`total_loss(params, state, batch, rng)` of an agent made of one critic loss
    `critic_loss(nets, params, target_params, hparams, config, batch, rng)` and one actor loss
    `actor_loss(nets, params, hparams, config, batch, rng)`, each (loss, metrics), drawn on
    independent halves of `rng`: their sum and merged metrics."""

    def total_loss(params, state, batch, rng):
        nets = networks(state.config)
        critic_rng, actor_rng = jax.random.split(rng)
        c_loss, c_info = critic_loss(nets, params, state.target_params, state.hparams, state.config, batch,
                                     critic_rng)
        a_loss, a_info = actor_loss(nets, params, state.hparams, state.config, batch, actor_rng)
        return c_loss + a_loss, {**c_info, **a_info}

    return total_loss


def gradient_step(state: AgentState, loss_fn, batch, rng):
    """The common update: grad of `loss_fn(params, state, batch, rng) -> (loss, metrics)`,
    one optimizer step on all params, then Polyak averaging of every target network."""
    grads, info = jax.grad(loss_fn, has_aux=True)(state.params, state, batch, rng)
    state = update_targets(apply_gradients(state, grads), state.hparams['tau'])
    return state, info
