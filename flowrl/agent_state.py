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


def gradient_step(state: AgentState, loss_fn, batch, rng):
    """The common update: grad of `loss_fn(params, state, batch, rng) -> (loss, metrics)`,
    one optimizer step on all params, then Polyak averaging of every target network."""
    grads, info = jax.grad(loss_fn, has_aux=True)(state.params, state, batch, rng)
    state = update_targets(apply_gradients(state, grads), state.hparams['tau'])
    return state, info
