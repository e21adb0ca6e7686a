"""The contract every agent in agents/ must honour (docs/DESIGN.md, "The agent contract")."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrl.engine import checkpoints
from flowrl.kit.agent_state import AgentState
from flowrl.testing import agent_names, import_agent, index, max_abs_diff, stack, synthetic_batch, tiny_config

AGENTS = agent_names()


def _sweepable_key(agent):
    """A dynamic hyperparameter other than the learning rate (every agent has one)."""
    keys = [k for k in agent.DYNAMIC_KEYS if k != 'lr']
    assert keys, f'{agent.__name__} declares no dynamic hyperparameter besides lr'
    return keys[0]


@pytest.fixture(params=AGENTS)
def agent(request):
    return import_agent(request.param)


def _init(agent, seed=0, **overrides):
    config = tiny_config(agent, **overrides)
    return agent.init(jax.random.PRNGKey(seed), synthetic_batch(), config)


def test_shapes_and_types(agent):
    batch = synthetic_batch()
    state = _init(agent)
    assert isinstance(state, AgentState)
    new_state, metrics = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(1))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    jax.tree.map(lambda a, b: np.testing.assert_equal(a.shape, b.shape), new_state, state)
    assert int(new_state.step) == 1
    assert metrics and all(jnp.shape(v) == () for v in metrics.values())
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    actions = jax.jit(agent.sample_actions)(new_state, batch['observations'], jax.random.PRNGKey(2))
    assert actions.shape == batch['actions'].shape
    assert float(jnp.max(jnp.abs(actions))) <= 1.0


def test_update_changes_params(agent):
    state = _init(agent)
    new_state, _ = jax.jit(agent.update)(state, synthetic_batch(), jax.random.PRNGKey(1))
    assert max_abs_diff(new_state.params, state.params) > 0


def test_jit_traces_once_and_dynamic_values_do_not_retrace(agent):
    traces = []

    # Named as the update it wraps, so its program is test_shapes_and_types' own: the session's
    # compilation cache (tests/conftest.py) serves it instead of compiling it again.
    @functools.wraps(agent.update)
    def counted_update(state, batch, rng):
        traces.append(1)
        return agent.update(state, batch, rng)

    update = jax.jit(counted_update)
    state = _init(agent)
    key = _sweepable_key(agent)
    for i in range(3):
        state, _ = update(state, synthetic_batch(rng_seed=i), jax.random.PRNGKey(i))
    other = state.replace(hparams={**state.hparams, key: state.hparams[key] * 3.0})
    update(other, synthetic_batch(), jax.random.PRNGKey(9))
    assert len(traces) == 1


def test_vmap_over_seeds_equals_single_runs(agent):
    states = [_init(agent, seed=s) for s in (0, 1)]
    batch, rngs = synthetic_batch(), jax.random.split(jax.random.PRNGKey(5), 2)
    stacked, _ = jax.jit(jax.vmap(agent.update, in_axes=(0, None, 0)))(stack(states), batch, rngs)
    for i, state in enumerate(states):
        single, _ = jax.jit(agent.update)(state, batch, rngs[i])
        assert max_abs_diff(index(stacked, i).params, single.params) < 1e-5


def test_vmap_over_dynamic_hyperparameter(agent):
    key = _sweepable_key(agent)
    base = agent.get_config()[key]
    states = [_init(agent, **{key: value}) for value in (base, base * 0.5 + 0.1)]
    assert float(states[0].hparams[key]) != float(states[1].hparams[key])
    batch, rng = synthetic_batch(), jax.random.PRNGKey(3)
    stacked, _ = jax.jit(jax.vmap(agent.update, in_axes=(0, None, None)))(stack(states), batch, rng)
    for i, state in enumerate(states):
        single, _ = jax.jit(agent.update)(state, batch, rng)
        assert max_abs_diff(index(stacked, i).params, single.params) < 1e-5


def test_max_abs_diff_counts_equal_infinities_as_equal_and_a_lone_nan_as_different():
    """The exact-equality checks here compare states holding grad_clip=inf: inf - inf must not
    turn into a NaN that a max could skip."""
    inf, nan = np.inf, np.nan
    assert max_abs_diff({'a': np.array([inf, 1.0])}, {'a': np.array([inf, 1.0])}) == 0.0
    assert max_abs_diff({'a': np.array([nan, 1.0])}, {'a': np.array([nan, 1.5])}) == 0.5
    assert max_abs_diff({'a': np.zeros(2), 'b': np.array([nan])}, {'a': np.zeros(2), 'b': np.array([0.0])}) == inf
    assert max_abs_diff({'a': np.array(2.0), 'b': np.array(-inf)}, {'a': np.array(-1.0), 'b': np.array(inf)}) == inf


def test_checkpoint_round_trip(agent, tmp_path):
    state, _ = jax.jit(agent.update)(_init(agent), synthetic_batch(), jax.random.PRNGKey(1))
    checkpoints.save(tmp_path, 1, state)
    restored = checkpoints.restore(tmp_path, _init(agent))
    assert max_abs_diff(restored, state) == 0.0
    assert restored.config == state.config
    after_restored, _ = jax.jit(agent.update)(restored, synthetic_batch(1), jax.random.PRNGKey(2))
    after_original, _ = jax.jit(agent.update)(state, synthetic_batch(1), jax.random.PRNGKey(2))
    assert max_abs_diff(after_restored, after_original) == 0.0


# ---- the contract is declared once (flowrl.kit.contract) and described where users read it ----

def _contract_names():
    from flowrl.kit import contract

    return [*contract.REQUIRED, *contract.HOOKS]


def test_design_and_the_agents_package_describe_every_name_of_the_contract():
    import pathlib
    import re

    import flowrl.agents

    root = pathlib.Path(__file__).resolve().parent.parent
    design = (root / 'docs' / 'DESIGN.md').read_text()
    section = design.split('## The agent contract', 1)[1].split('\n## ', 1)[0]
    described = dict(design=section, agents_package=flowrl.agents.__doc__)
    for where, text in described.items():
        missing = [name for name in _contract_names() if not re.search(rf'\b{name}\b', text)]
        assert not missing, f'{where} does not describe {missing}'


def test_no_module_reads_a_hook_but_the_contract():
    """Hooks are read through flowrl.kit.contract.hook only, so the contract lists every one."""
    import pathlib
    import re

    from flowrl.kit import contract

    root = pathlib.Path(__file__).resolve().parent.parent
    reading = re.compile(r'(?:getattr|hasattr)\([^)]*[\'"](' + '|'.join(contract.HOOKS) + r')[\'"]')
    offenders = [f'{path.relative_to(root)}: {match.group(0)}'
                 for folder in ('flowrl', 'benchmarks', 'tests') for path in sorted((root / folder).rglob('*.py'))
                 if path.name != 'contract.py' and path.name != 'test_contract.py'
                 for match in reading.finditer(path.read_text())]
    assert not offenders, offenders


def test_a_missing_hook_gets_its_stand_in_and_an_unknown_name_is_refused():
    import types

    from flowrl.kit import contract

    bare = types.SimpleNamespace(update='update', sample_actions='sample')
    assert contract.hook(bare, 'explore_actions') == 'sample'  # online acting falls back to sample_actions
    assert contract.hook(bare, 'phase_updates')('config') == ((0, 'update'),)
    assert contract.hook(bare, 'prepare_dataset')({'a': 1}) == {'a': 1}
    assert contract.hook(bare, 'dataset_work') is None and contract.hook(bare, 'action_diagnostics') is None
    own = types.SimpleNamespace(explore_actions='explore', sample_actions='sample')
    assert contract.hook(own, 'explore_actions') == 'explore'
    with pytest.raises(KeyError, match='not a hook of the agent contract'):
        contract.hook(bare, 'explore')
    assert contract.missing_names({'get_config', 'init', 'update'}) == ['sample_actions', 'DYNAMIC_KEYS']
