"""Offline-to-online fine-tuning (flowrl/engine/online.py and the runner's online phase): the transitions
stored are the authors' (terminal = episode over, mask = 1 - terminated), an online run logs its
exploration, its episodes go on across checkpoints and evaluations (a checkpoint records them and
a resumed run replays them), it resumes exactly from a checkpoint taken mid-episode (buffers included), member i
equals a single run, `--offline_steps=0` with balanced sampling, and `--restore_path`.
Tiny in-process runs (`flowrl.testing.use_fake_world`); main.py end to end: tests/test_main.py."""

import os
import types

import gymnasium
import numpy as np
import pytest

from flowrl import run_files
from flowrl.errors import UserError
from flowrl.engine.online import EXPLORATION_KEYS, MemberEnvs
from flowrl.engine.sampling import Sampler
from flowrl.run.runner import Run, resume
from flowrl.testing import crash_at_evaluation, index, max_abs_diff, tiny_run_settings, use_fake_world

QUIET = lambda *_: None
ONLINE = dict(offline_steps=4, online_steps=8, buffer_size=300)  # updates 1-4 offline, 5-12 online

pytestmark = pytest.mark.xdist_group('test_online')


class CountingEnv:
    """Observation = [episode seed % 100, time]; terminates at time 3 when the first action is
    positive, else is truncated at time 5; reward = time; success when it terminates."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
    spec = types.SimpleNamespace(max_episode_steps=5)

    def reset(self, seed=None):
        self.seed, self.time = seed % 100, 0
        return np.array([self.seed, 0], np.float32), {}

    def step(self, action):
        self.time += 1
        terminated = self.time == 3 and action[0] > 0
        info = dict(success=float(terminated))
        return np.array([self.seed, self.time], np.float32), float(self.time), terminated, self.time == 5, info


def test_member_envs_store_the_authors_transitions_and_episode_statistics():
    envs = MemberEnvs(CountingEnv, member_seeds=[0, 1])
    first = envs.restart(step=0)
    actions = np.array([[1.0], [-1.0]], np.float32)  # member 0 terminates at 3, member 1 is truncated at 5
    steps = [envs.step(actions, step) for step in range(1, 6)]
    transitions = {k: np.stack([t[k] for t, _ in steps]) for k in steps[0][0]}  # [time, member, ...]
    np.testing.assert_array_equal(transitions['observations'][0], first)
    np.testing.assert_array_equal(transitions['terminals'][:, 0], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(transitions['masks'][:, 0], [1, 1, 0, 1, 1])  # terminated: no bootstrap
    np.testing.assert_array_equal(transitions['terminals'][:, 1], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(transitions['masks'][:, 1], [1, 1, 1, 1, 1])  # truncated: bootstrap
    np.testing.assert_array_equal(transitions['next_observations'][:, 1, 1], [1, 2, 3, 4, 5])
    # After its episode ended at time 3, member 0 acts from a new episode's first observation.
    assert transitions['observations'][3, 0, 1] == 0 and transitions['observations'][2, 0, 1] == 2
    np.testing.assert_array_equal(transitions['rewards'][:, 1], [1, 2, 3, 4, 5])
    stats = envs.statistics()
    np.testing.assert_array_equal(stats['exploration/success'], [1, 0])
    np.testing.assert_array_equal(stats['exploration/episode_return'], [6, 15])
    np.testing.assert_array_equal(stats['exploration/episode_length'], [3, 5])
    np.testing.assert_array_equal(stats['exploration/episodes'], [1, 1])
    assert np.isnan(envs.statistics()['exploration/success']).all()  # read once
    envs.close()


def test_a_recorded_episode_replays_exactly_and_a_different_one_is_refused():
    """A checkpoint's episodes (MemberEnvs.record) continue in new environments by replaying their
    actions from their reset seeds: the same observations, returns, lengths and later transitions."""
    envs = MemberEnvs(CountingEnv, member_seeds=[0, 1])
    envs.restart(step=0)
    actions = np.array([[1.0], [-1.0]], np.float32)
    for step in range(1, 5):  # member 0's episode ended at 3 and a new one is 1 step old; member 1's is 4 old
        envs.step(actions, step)
    record = envs.record()
    np.testing.assert_array_equal(record['taken'], [1, 4])
    continued = MemberEnvs(CountingEnv, member_seeds=[0, 1])
    np.testing.assert_array_equal(continued.replay(record), envs.observations)
    np.testing.assert_array_equal(continued.returns, envs.returns)  # member 1: 1 + 2 + 3 + 4
    np.testing.assert_array_equal(continued.lengths, envs.lengths)
    (transitions, observations), (again, again_observations) = envs.step(actions, 5), continued.step(actions, 5)
    for key, value in transitions.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)
    np.testing.assert_array_equal(again_observations, observations)
    np.testing.assert_array_equal(continued.statistics()['exploration/episode_return'], [np.nan, 15])
    tampered = dict(record, observations=record['observations'] + np.float32(1))
    with pytest.raises(RuntimeError, match=r'members \[0, 1\] .* did not reproduce the checkpointed observations'):
        MemberEnvs(CountingEnv, member_seeds=[0, 1]).replay(tampered)
    envs.close()
    continued.close()


@pytest.fixture(scope='module')
def world():
    with pytest.MonkeyPatch.context() as patch:
        use_fake_world(patch)
        yield patch


def read(run_dir, name):
    rows = run_files.CsvLog(os.path.join(run_dir, name)).read()
    return [{k: v for k, v in row.items() if k != 'env_steps_per_s'} for row in rows]


@pytest.fixture(scope='module')
def straight(world, tmp_path_factory):
    """2 seeds, 4 offline updates then 8 online steps; checkpoints and evaluations every 4."""
    run = Run(tiny_run_settings(tmp_path_factory.mktemp('straight'), num_seeds=2, **ONLINE), log=QUIET)
    return run, run.train()


def test_online_run_fills_each_members_buffer_and_logs_exploration(straight):
    run, results = straight
    assert results['steps'] == 12
    np.testing.assert_array_equal(run.position.buffers.size, [8, 8])  # one transition per online step and member
    assert run.position.buffers.data['observations'].shape[:2] == (2, 8)  # min(online steps, buffer): no dataset copy
    rows = read(run.run_dir, run_files.TRAIN_CSV)
    assert [int(r['step']) for r in rows] == [s for s in (2, 4, 6, 8, 10, 12) for _ in range(2)]
    assert all(key in rows[0] for key in EXPLORATION_KEYS)
    offline, online = rows[:4], rows[4:]
    assert all(r['exploration/episodes'] == 'nan' for r in offline)
    assert sum(float(r['exploration/episodes']) for r in online) > 0  # FakeEnv episodes last 2-9 steps
    assert [int(r['step']) for r in read(run.run_dir, run_files.EVAL_CSV)] == [4, 4, 8, 8, 12, 12]


def test_interrupted_online_run_resumes_exactly(straight, tmp_path, monkeypatch):
    """A crash while evaluating at update 8 (four online steps in): the checkpoint saved before
    that evaluation holds the buffers, and the resumed run's logs equal the uninterrupted ones."""
    reference, _ = straight
    crash_at_evaluation(monkeypatch, 8)
    run = Run(tiny_run_settings(tmp_path, num_seeds=2, **ONLINE), log=QUIET)
    with pytest.raises(KeyboardInterrupt):
        run.train()
    monkeypatch.undo()
    resume(run.run_dir, log=QUIET)
    for name in (run_files.TRAIN_CSV, run_files.EVAL_CSV):
        assert read(run.run_dir, name) == read(reference.run_dir, name), name


def test_online_episodes_go_on_across_checkpoints_and_evaluations(straight, tmp_path):
    """The authors' loop does not cut episodes at evaluations: the same run evaluated and saved only
    at its end learns from the same transitions, so its training rows are the same."""
    reference, _ = straight
    from flowrl.engine import checkpoints

    like = dict(episodes=reference.online.abstract_episodes())
    at_8 = checkpoints.read_part(reference.checkpoint_dir, like, 8)['episodes']
    assert np.asarray(at_8['taken']).max() > 0  # episodes were running at the checkpoint and evaluation at 8
    once = Run(tiny_run_settings(tmp_path, num_seeds=2, **dict(ONLINE, eval_interval=12, save_interval=12)),
               log=QUIET)
    once.train()
    assert read(once.run_dir, run_files.TRAIN_CSV) == read(reference.run_dir, run_files.TRAIN_CSV)
    assert [int(r['step']) for r in read(once.run_dir, run_files.EVAL_CSV)] == [12, 12]


def test_member_i_of_an_online_run_equals_a_single_run(straight, tmp_path):
    reference, _ = straight
    single = Run(tiny_run_settings(tmp_path, seed=1, **ONLINE), log=QUIET)
    single.train()
    assert max_abs_diff(index(single.position.states, 0), index(reference.position.states, 1)) == 0.0
    assert max_abs_diff(index(single.position.buffers, 0), index(reference.position.buffers, 1)) == 0.0
    drop = lambda rows: [{k: v for k, v in r.items() if k != 'member'} for r in rows]
    assert drop(read(single.run_dir, run_files.TRAIN_CSV)) == drop(
        [r for r in read(reference.run_dir, run_files.TRAIN_CSV) if r['seed'] == '1'])


def test_online_only_run_with_balanced_sampling(world, tmp_path):
    """The RLPD setting: no offline updates, every batch half dataset and half online transitions."""
    run = Run(tiny_run_settings(tmp_path, offline_steps=0, online_steps=6, balanced_sampling=1, buffer_size=4,
                                log_interval=3, eval_interval=6), log=QUIET)
    results = run.train()
    assert results['steps'] == 6 and [int(r['step']) for r in read(run.run_dir, run_files.EVAL_CSV)] == [6]
    assert int(run.position.buffers.size[0]) == 4 and int(run.position.buffers.insert[0]) == 2  # capacity buffer_size: wrapped


def test_restore_path_starts_every_member_from_the_saved_agent(straight, tmp_path):
    reference, _ = straight
    with pytest.raises(UserError, match='trained 2 members and this run has 3'):
        Run(tiny_run_settings(tmp_path, num_seeds=3, restore_path=reference.run_dir), log=QUIET)
    started = Run(tiny_run_settings(tmp_path, num_seeds=2, restore_path=reference.run_dir, restore_epoch=8),
                  log=QUIET)
    from flowrl.engine import checkpoints

    saved = checkpoints.read_part(reference.checkpoint_dir, dict(states=reference.position.states), 8)['states']
    assert max_abs_diff(started.position.states, saved) == 0.0
    assert max_abs_diff(started.position.states, reference.position.states) > 0  # the checkpoint at 8, not the final agents


def test_resume_keeps_the_phases_of_an_online_run(straight):
    reference, _ = straight
    with pytest.raises(UserError, match='its phases cannot change on resume'):
        resume(reference.run_dir, dict(offline_steps=6), log=QUIET)


@pytest.mark.parametrize('name', ['iql', 'rebrac', 'sac'])
def test_agents_explore_around_their_evaluation_action(name):
    """Online acting as the authors' temperature 1: IQL samples its unit-std Gaussian, ReBRAC adds
    clipped TD3 noise, SAC samples its squashed policy; evaluation (`sample_actions`) does not."""
    import jax

    from flowrl.engine.online import explore_function
    from flowrl.testing import import_agent, synthetic_batch, tiny_config

    agent = import_agent(name)
    batch = synthetic_batch(batch_size=512)
    state = agent.init(jax.random.PRNGKey(0), batch, tiny_config(agent))
    explore = np.asarray(explore_function(agent)(state, batch['observations'], jax.random.PRNGKey(1)))
    mode = np.asarray(agent.sample_actions(state, batch['observations'], jax.random.PRNGKey(1)))
    again = np.asarray(agent.sample_actions(state, batch['observations'], jax.random.PRNGKey(2)))
    np.testing.assert_array_equal(mode, again)  # evaluation is deterministic for these agents
    offsets = explore - mode
    assert np.all(np.abs(explore) <= 1)
    if name == 'rebrac':
        config = tiny_config(agent)
        assert np.all(np.abs(offsets) <= config.actor_noise_clip + 1e-6)
        assert 0.5 * config.actor_noise < offsets.std() < 1.5 * config.actor_noise
    else:  # std 1 before clipping (IQL's constant std; SAC's initial std, exp(0))
        assert 0.3 < offsets.std() < 1.0, offsets.std()


def test_validation_metrics_are_the_updates_metrics_on_the_validation_split(tmp_path):
    """With a validation split, every train.csv row has validation/<metric>: the update's metrics
    on a validation batch at the row's states, keys from (seed, step); training is unchanged."""
    from flowrl.engine.evaluation import member_keys

    rows = {}
    for validation in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            use_fake_world(patch, validation=validation)
            run = Run(tiny_run_settings(tmp_path / str(validation), num_seeds=2, eval_interval=0), log=QUIET)
            run.train()
        rows[validation] = read(run.run_dir, run_files.TRAIN_CSV)
    trained = [{k: v for k, v in r.items() if not k.startswith('validation/')} for r in rows[True]]
    assert trained == rows[False]  # validating draws no training randomness and moves no state
    last = [r for r in rows[True] if r['step'] == '8']
    expected = run.parts.validation.metrics(run.agent.update, run.position.states, run.parts.validation.dataset,
                                            member_keys([0, 1], 8))
    for name, values in expected.items():
        assert [float(r[f'validation/{name}']) for r in last] == [float(v) for v in np.asarray(values)]
        assert [r[f'validation/{name}'] for r in last] != [r[name] for r in last]


# ----------------------------------------------------------------------------- buffer in place

CAPACITY = 4093  # a size no other array has, to find the buffer's arrays in the compiled programs


@pytest.mark.parametrize('members', [1, 2])
def test_online_step_appends_in_place_without_copying_the_buffer(members):
    """XLA:CPU copied every buffer array once per step (O(capacity): ~170 ms for a 1M-row buffer)
    when the batch was drawn in the program that appends. Neither compiled program may copy it."""
    import re

    import jax
    import jax.numpy as jnp

    from flowrl.agents import fql
    from flowrl.engine.online import OnlineProgram, empty_buffers
    from flowrl.engine.training import init_members, member_shardings, metric_names
    from flowrl.testing import synthetic_batch, tiny_config

    config = tiny_config(fql, hidden=(8,), batch_size=4)
    dataset = {k: v for k, v in synthetic_batch(batch_size=64).items() if k != 'next_actions'}
    states, rngs = init_members(fql, [config] * members, list(range(members)), dataset)
    member_sharding, replicated = member_shardings(members)
    states, rngs = jax.device_put(states, member_sharding), jax.device_put(rngs, member_sharding)
    dataset = jax.device_put(dataset, replicated)
    online = empty_buffers(dataset, members, CAPACITY, member_sharding)
    program = OnlineProgram(fql, config.batch_size, 'auto', False, CAPACITY)
    one = jax.tree.map(lambda x: x[0], states)
    names = metric_names(fql.update, one, dataset, Sampler(config.batch_size))
    totals = {k: jnp.zeros((members,), jnp.float32) for k in names}
    alive = jnp.ones((members,), bool)
    transitions = {k: np.repeat(np.asarray(v[:1]), members, axis=0) for k, v in dataset.items()}
    observations = np.asarray(dataset['observations'][:members])
    states, rngs, totals, online, _, actions = program.step(fql.update, states, rngs, totals, alive, online,
                                                            transitions, observations, dataset)
    assert int(online.size[0]) == 1 and actions.shape == (members, 3)
    np.testing.assert_array_equal(online.data['observations'][:, 0], transitions['observations'])

    store, step = program._compiled[('store', members)], program._compiled[('step', members, fql.update)]
    texts = [store.lower(online, transitions).compile().as_text(),
             step.lower(states, rngs, totals, alive, online, observations, dataset).compile().as_text()]
    copies = [line for text in texts for line in text.splitlines()
              if re.search(rf'\[[\d,]*{CAPACITY}[\d,]*\]\S* copy\(', line)]
    assert copies == []


def test_append_alone_stores_the_steps_transitions_without_an_update():
    """`OnlineProgram.append`, the store that `step` starts with, alone (the locomotion recipe's
    random steps, flowrl.making.online_sac): each call writes the next row, nothing else is compiled."""
    from flowrl.agents import fql
    from flowrl.engine.online import OnlineProgram, empty_buffers
    from flowrl.testing import synthetic_batch

    dataset = {k: np.asarray(v) for k, v in synthetic_batch(batch_size=8).items() if k != 'next_actions'}
    online = empty_buffers(dataset, 1, CAPACITY, None)
    program = OnlineProgram(fql, 4, 'auto', False, CAPACITY)
    for row in range(3):
        online = program.append(online, {k: v[row:row + 1] for k, v in dataset.items()})
    assert int(online.size[0]) == 3 and int(online.insert[0]) == 3
    for key, values in dataset.items():
        np.testing.assert_array_equal(online.data[key][0, :3], values[:3])
        assert not np.any(online.data[key][0, 3:])
    assert list(program._compiled) == [('store', 1)]


def test_an_ogbench_episode_replays_bit_for_bit_in_worker_processes():
    """The premise of resuming mid-episode: OGBench's MuJoCo environments, reset with the same seed
    and given the same actions, reach the same state (here replayed in two worker processes)."""
    import functools

    from flowrl.suites.ogbench_envs import make_env, parse_env_name

    make = functools.partial(make_env, parse_env_name('cube-single-play'))
    envs = MemberEnvs(make, member_seeds=[0, 1], training_dtype=np.float32)
    assert envs.actions_taken.shape == (2, 200, 5)  # cube-single's time limit, its action size
    envs.restart(step=0)
    rng = np.random.default_rng(0)
    for step in range(1, 31):
        envs.step(rng.uniform(-1, 1, (2, 5)).astype(np.float32), step)
    continued = MemberEnvs(make, member_seeds=[0, 1], workers=2, training_dtype=np.float32)
    np.testing.assert_array_equal(continued.replay(envs.record()), envs.observations)
    np.testing.assert_array_equal(continued.returns, envs.returns)
    envs.close()
    continued.close()


def test_online_step_freezes_diverged_members_without_copying_their_state():
    """A member whose update is non-finite, or that is not alive, keeps its state, the others
    update; the compiled step has no `conditional` (which copied the whole state every step) and
    copies no state array. (Donating the states made XLA copy them at paper size, see
    flowrl.engine.online.keep_if; at these tiny sizes it does not, so that is checked by hand.)"""
    import re

    import jax
    import jax.numpy as jnp

    from flowrl.agents import fql
    from flowrl.engine.online import OnlineProgram, empty_buffers
    from flowrl.testing import max_abs_diff, synthetic_batch, tiny_config
    from flowrl.engine.training import init_members, member_shardings, metric_names

    def update(state, batch, rng):  # non-finite for the member with alpha 9
        state, metrics = fql.update(state, batch, rng)
        return state, {**metrics, 'critic/loss': jnp.where(state.hparams['alpha'] > 5, jnp.nan, 1.0)}

    configs = [tiny_config(fql, hidden=(8,), batch_size=4, alpha=alpha) for alpha in (1.0, 9.0)]
    dataset = {k: v for k, v in synthetic_batch(batch_size=64).items() if k != 'next_actions'}
    states, rngs = init_members(fql, configs, [0, 1], dataset)
    member_sharding, replicated = member_shardings(2)
    states, rngs = jax.device_put(states, member_sharding), jax.device_put(rngs, member_sharding)
    dataset = jax.device_put(dataset, replicated)
    online = empty_buffers(dataset, 2, CAPACITY, member_sharding)
    program = OnlineProgram(fql, 4, 'auto', False, CAPACITY)
    names = metric_names(update, jax.tree.map(lambda x: x[0], states), dataset, Sampler(4))
    zeros = lambda: {k: jnp.zeros((2,), jnp.float32) for k in names}  # the step donates the totals and keys
    transitions = {k: np.repeat(np.asarray(v[:1]), 2, axis=0) for k, v in dataset.items()}
    observations = np.asarray(dataset['observations'][:2])
    before = jax.device_get(states)
    for alive, expect_kept in (([True, True], [False, True]), ([False, True], [True, True])):
        alive = jnp.asarray(alive)
        new, _, _, online, first_bad, _ = program.step(update, states, jnp.array(rngs), zeros(), alive, online,
                                                       transitions, observations, dataset)
        np.testing.assert_array_equal(first_bad, [-1, 0])
        kept = [max_abs_diff(jax.tree.map(lambda x: x[i], new.params), jax.tree.map(lambda x: x[i], before.params))
                == 0 for i in range(2)]
        assert kept == expect_kept
    step = program._compiled[('step', 2, update)]
    text = step.lower(states, rngs, zeros(), alive, online, observations, dataset).compile().as_text()
    assert ' conditional(' not in text
    assert re.findall(r'copy\(%states_\S+', text) == []
