"""The compiled training program: members = independent runs, exact resume, divergence checks."""

import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from agents import fql
from flowrl import checkpoints
from flowrl.errors import TrainingDiverged
from flowrl.runner import Run
from flowrl.testing import index, max_abs_diff, synthetic_batch, tiny_config
from flowrl.training import NONFINITE_KEY, ChunkRunner, chunk_boundaries, init_members, summarize

DATASET = synthetic_batch(batch_size=256)
CONFIG = tiny_config(fql, batch_size=16)
RUNNER = ChunkRunner(fql, 16)  # shared: each (chunk length, member count) compiles once per session
UPDATES = 8


def _train(seeds, configs=None):
    configs = configs or [CONFIG] * len(seeds)
    states, rngs = init_members(fql, configs, seeds, DATASET)
    return RUNNER(states, rngs, DATASET, UPDATES)


def test_chunk_boundaries_cover_every_interval_and_the_end():
    assert list(chunk_boundaries(0, 10, (4, 6, 0))) == [4, 6, 8, 10]
    assert list(chunk_boundaries(6, 10, (4, 6))) == [8, 10]
    assert list(chunk_boundaries(0, 5, (5, 100))) == [5]


def test_n_seed_run_equals_n_single_seed_runs():
    together, _, _ = _train([0, 1])
    for i, seed in enumerate([0, 1]):
        alone, _, _ = _train([seed])
        assert max_abs_diff(index(together, i).params, index(alone, 0).params) < 1e-5
    assert max_abs_diff(index(together, 0).params, index(together, 1).params) > 1e-3  # seeds differ


def test_sweep_member_equals_a_single_run_with_that_value():
    configs = [CONFIG.copy_and_resolve_references() for _ in range(2)]
    configs[1].alpha = 0.5
    together, _, _ = _train([0, 0], configs=configs)
    alone, _, _ = _train([0], configs=[configs[1]])
    assert float(together.hparams['alpha'][1]) == 0.5
    assert max_abs_diff(index(together, 1).params, index(alone, 0).params) < 1e-5
    assert max_abs_diff(index(together, 0).params, index(together, 1).params) > 1e-4


def test_interrupted_and_resumed_training_matches_uninterrupted(tmp_path):
    straight = RUNNER(*_train([0, 1])[:2], DATASET, UPDATES)
    states, rngs, _ = _train([0, 1])
    checkpoints.save(tmp_path, UPDATES, dict(states=states, rngs=rngs))
    like = dict(zip(('states', 'rngs'), init_members(fql, [CONFIG] * 2, [0, 1], DATASET)))
    restored = checkpoints.restore(tmp_path, like)
    resumed = RUNNER(restored['states'], restored['rngs'], DATASET, UPDATES)
    assert max_abs_diff(resumed[0], straight[0]) == 0.0
    assert max_abs_diff(resumed[1], straight[1]) == 0.0


def test_jit_compiles_once_per_chunk_length():
    runner = ChunkRunner(fql, 16)
    states, rngs = init_members(fql, [CONFIG], [0], DATASET)
    states, rngs, _ = runner(states, rngs, DATASET, 3)
    states, rngs, _ = runner(states, rngs, DATASET, 3)
    states = states.replace(hparams={**states.hparams, 'alpha': states.hparams['alpha'] * 2})
    runner(states, rngs, DATASET, 3)
    assert runner.function(3)._cache_size() == 1


def test_summary_reports_the_first_nonfinite_update():
    metrics = {'a': jnp.array([1.0, 2.0, jnp.nan, 3.0]), 'b': jnp.array([0.0, jnp.inf, 1.0, 1.0])}
    assert int(summarize(metrics)[NONFINITE_KEY]) == 1
    assert int(summarize({'a': jnp.ones(3)})[NONFINITE_KEY]) == -1


def test_nonfinite_loss_stops_the_run_with_the_step_and_metric(tmp_path, monkeypatch):
    bad = dict(DATASET, rewards=DATASET['rewards'].at[:].set(jnp.nan))
    monkeypatch.setattr('flowrl.runner.load_dataset', lambda *a, **k: {k: np.asarray(v) for k, v in bad.items()})
    from flowrl.runner import RunSettings
    settings = RunSettings(agent='agents/fql.py', env_name='cube-single-play', offline_steps=4, log_interval=2,
                           eval_episodes=0, save_dir=str(tmp_path),
                           agent_overrides=dict(actor_hidden_dims='8,8', value_hidden_dims='8,8', batch_size='8'))
    with pytest.raises(TrainingDiverged, match=r'non-finite .*critic/loss.* at update 1;'):
        Run(settings, log=lambda *_: None).train()


SHARDED_SCRIPT = textwrap.dedent('''
    import jax
    from agents import fql
    from flowrl.testing import index, max_abs_diff, synthetic_batch, tiny_config
    from flowrl.training import ChunkRunner, init_members, member_shardings
    dataset, config = synthetic_batch(batch_size=256), tiny_config(fql, batch_size=16)
    runner = ChunkRunner(fql, 16)
    states, rngs = init_members(fql, [config] * 4, [0, 1, 2, 3], dataset)
    members, replicated = member_shardings(4)
    states, rngs = jax.device_put(states, members), jax.device_put(rngs, members)
    states, _, _ = runner(states, rngs, jax.device_put(dataset, replicated), 6)
    devices = len(jax.tree.leaves(states.params)[0].sharding.device_set)
    worst = 0.0
    for i in range(4):
        alone, r = init_members(fql, [config], [i], dataset)
        alone, _, _ = runner(alone, r, dataset, 6)
        worst = max(worst, max_abs_diff(index(states, i).params, index(alone, 0).params))
    print('RESULT', jax.device_count(), devices, worst)
''')


def test_members_sharded_over_four_host_devices_equal_single_runs():
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4', JAX_PLATFORMS='cpu')
    out = subprocess.run([sys.executable, '-c', SHARDED_SCRIPT], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    device_count, used, worst = out.stdout.split('RESULT')[1].split()
    assert (int(device_count), int(used)) == (4, 4)
    assert float(worst) < 1e-5
