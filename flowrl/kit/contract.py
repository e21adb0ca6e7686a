"""The agent contract, declared once: what every agent module defines (`REQUIRED`) and the
optional hooks a run calls when an agent defines them (`HOOKS`), each with its meaning and what
stands in for it when the agent lacks it.

Every module that needs a hook asks `hook(agent, name)`; none reads an agent's attributes by
itself, so the list below is the whole contract. docs/DESIGN.md ("The agent contract") and
agents/__init__.py describe it in words; tests/test_contract.py checks that both name every
entry here, so the three cannot drift.
"""

import dataclasses
from typing import Callable

REQUIRED = {
    'get_config': 'get_config() -> ml_collections.ConfigDict, every key documented',
    'init': 'init(rng, example_batch, config) -> state (an immutable pytree)',
    'update': 'update(state, batch, rng) -> (state, metrics): pure, jittable, vmappable',
    'sample_actions': 'sample_actions(state, observations, rng) -> actions (what evaluation runs)',
    'DYNAMIC_KEYS': 'the config keys that are pytree leaves of the state (swept under vmap, no recompiling)',
}


@dataclasses.dataclass(frozen=True)
class Hook:
    meaning: str
    # (agent) -> what a run uses when the agent lacks the hook; None: the run skips that work.
    stand_in: Callable | None = None


HOOKS = {
    'phase_updates': Hook('phase_updates(config) -> ((first_step, update), ...): the update of each stretch of '
                          'training (QIPO\'s phases); chunks end at each phase start',
                          lambda agent: lambda config: ((0, agent.update),)),
    'fit_schedule': Hook('fit_schedule(config, first_step, last_step) -> {key: value}: config values that fit a '
                         'step schedule to the agent steps a run trains, or a UserError (QIPO)'),
    'dataset_work': Hook('dataset_work(config) -> flowrl.kit.dataset_work.DatasetWork or None: work over the whole '
                         'dataset at chosen steps (QIPO\'s stored supports)'),
    'prepare_dataset': Hook('prepare_dataset(dataset) -> dataset: once, on the host dataset (ReBRAC\'s next_actions)',
                            lambda agent: lambda dataset: dataset),
    'explore_actions': Hook('explore_actions(state, observations, rng) -> actions: online acting (SAC samples '
                            'its policy)', lambda agent: agent.sample_actions),
    'sequence_horizon': Hook('sequence_horizon(config) -> H: the agent trains on batches of sequences of H steps '
                             '(action chunking, flowrl.kit.chunking; the run\'s --horizon_length is its config\'s '
                             'horizon_length)', lambda agent: lambda config: 1),
    'action_horizon': Hook('action_horizon(config) -> H: `sample_actions` returns chunks of H actions [B, H * A], '
                           'which evaluation and online acting execute open loop (flowrl.kit.chunking)',
                           lambda agent: lambda config: 1),
    'action_diagnostics': Hook('action_diagnostics(state, observations, rng) -> dict of scalars: eval.csv columns '
                               'at every evaluation (QFQL\'s grad_a Q norms)'),
}


def hook(agent, name: str):
    """The agent's optional `name`, else its stand-in (None where the run skips the work)."""
    if name not in HOOKS:
        raise KeyError(f'{name!r} is not a hook of the agent contract (flowrl.kit.contract.HOOKS).')
    function = getattr(agent, name, None)
    if function is not None:
        return function
    stand_in = HOOKS[name].stand_in
    return None if stand_in is None else stand_in(agent)


def defines(agent, name: str) -> bool:
    """Whether the agent defines the optional `name` itself (not its stand-in)."""
    if name not in HOOKS:
        raise KeyError(f'{name!r} is not a hook of the agent contract (flowrl.kit.contract.HOOKS).')
    return getattr(agent, name, None) is not None


def missing_names(names) -> list:
    """The required names that `names` (a module's attributes or top-level names) lacks."""
    return [name for name in REQUIRED if name not in names]
