"""Acting on chunks (--horizon_length=H; flowrl/engine/action_queue.py, docs/DESIGN.md "Acting on
chunks"): evaluation and online fine-tuning execute each chunk of H actions open loop, an episode
may end mid-chunk, a chunk costs one policy call, online transitions are stored per step, a run
stopped mid-chunk resumes exactly, and the flag is checked, recorded and kept on resume.

The agent is tests/chunked_agent.py, whose actions say which chunk position, observation and
agent step they come from; the environments are flowrl.testing.FakeEnv recording what they get."""

import os

import jax
import numpy as np
import pytest


from flowrl import run_files, stopping
from flowrl.engine import checkpoints
from flowrl.engine.action_queue import ActionQueues, as_chunks
from flowrl.engine.evaluation import EvalEnvs, make_policy, run_episodes
from flowrl.engine.training import init_members
from flowrl.errors import UserError
from flowrl.registry.agent_loading import load_agent
from flowrl.run.runner import Run, resume
from flowrl.run.settings import check_settings
from flowrl.testing import (FakeEnv, OneUpdateChunks, crash_at_evaluation, stop_online_after_step, synthetic_batch,
                            tiny_run_settings, use_fake_world)

QUIET = lambda *_: None
H = 3
AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'chunked_agent.py')
ACTION_DIM = 3  # FakeEnv's and synthetic_batch's
# The agent defines flowrl.kit.chunking's hooks, so the run's flag sets its config's horizon_length.
CHUNKED = dict(agent=AGENT, agent_overrides={}, horizon_length=H)
ONLINE = dict(offline_steps=4, online_steps=8, buffer_size=300)  # updates 1-4 offline, 5-12 online

pytestmark = pytest.mark.xdist_group('test_acting_on_chunks')


class RecordingEnv(FakeEnv):
    """FakeEnv that keeps, per episode, the observation it showed before each step and the action
    it got (`episodes`: a list of (observations [T, 6], actions [T, 3]))."""

    made = []  # every instance, in the order made

    def __init__(self):
        super().__init__()
        self.episodes = []
        RecordingEnv.made.append(self)

    def reset(self, seed=None):
        observation, info = super().reset(seed)
        self.episodes.append(([], []))
        self._shown = observation
        return observation, info

    def step(self, action):
        observations, actions = self.episodes[-1]
        observations.append(self._shown)
        actions.append(np.array(action, np.float32))
        result = super().step(action)
        self._shown = result[0]
        return result

    def recorded(self):
        return [(np.asarray(o), np.asarray(a)) for o, a in self.episodes if o]


def expected_episode_actions(observations, agent_steps=None):
    """The actions of an episode that executes chunks of H open loop: at time t, action t % H of
    the chunk sampled at time t - t % H, at that time's observation (by the agent at
    `agent_steps[t - t % H]`, 0 when not given)."""
    times = np.arange(len(observations))
    starts = times - times % H
    steps = np.zeros(len(times)) if agent_steps is None else np.asarray(agent_steps)[starts]
    return np.stack([(t % H + 1) / 10 + observations[s, :ACTION_DIM] / 1000 + k / 10000
                     for t, s, k in zip(times, starts, steps)])


# ----------------------------------------------------------------------------- the queue itself

def test_a_queue_plays_its_chunk_in_order_and_is_refilled_when_used_up_or_its_episode_ends():
    flat = np.arange(2 * H * 2, dtype=np.float32).reshape(2, H * 2)  # 2 members, chunks of H actions of 2
    np.testing.assert_array_equal(as_chunks(flat, H)[1, 2], flat[1, 4:6])  # time-major: action t at [t*A:(t+1)*A]
    queues = ActionQueues.fresh(flat, H)
    np.testing.assert_array_equal(queues.next_actions(), flat[:, 0:2])
    queues = queues.stepped([False, True])  # member 1's episode ended after its first action
    np.testing.assert_array_equal(queues.needs_chunk(), [False, True])
    new = flat + 100
    queues = queues.refilled(new, queues.needs_chunk())
    np.testing.assert_array_equal(queues.next_actions(), [flat[0, 2:4], new[1, 0:2]])
    queues = queues.stepped([False, False]).stepped([False, False])  # member 0 has taken its H actions
    np.testing.assert_array_equal(queues.needs_chunk(), [True, False])
    with pytest.raises(RuntimeError, match='used up and not refilled'):
        queues.next_actions()
    with pytest.raises(ValueError, match='not chunks of 3 actions'):
        as_chunks(np.zeros((2, 4)), H)
    with pytest.raises(ValueError, match=r'\[batch, 3 x 3\]'):  # an agent that gives single actions of 3
        ActionQueues.fresh(np.zeros((2, 3)), H, action_size=3)


def test_a_queue_record_continues_it_and_h1_records_the_next_actions_as_before_chunking():
    queues = ActionQueues.fresh(np.arange(12, dtype=np.float32).reshape(2, 6), H).stepped([False, False])
    record = queues.record()
    assert set(record) == {'action_chunks', 'chunk_taken'}
    again = ActionQueues.from_record(dict(record, seeds=np.zeros(2)), H)
    np.testing.assert_array_equal(again.chunks, queues.chunks)
    np.testing.assert_array_equal(again.taken, [1, 1])
    shapes = ActionQueues.record_shapes(2, H, (2,))
    assert {k: v.shape for k, v in record.items()} == {k: s for k, (s, _) in shapes.items()}
    # H = 1: the checkpoints of runs before chunking hold `next_actions` [members, action]; they still resume.
    old = dict(next_actions=np.array([[0.5, -0.5], [0.25, 0.0]], np.float32))
    single = ActionQueues.from_record(old, 1)
    np.testing.assert_array_equal(single.next_actions(), old['next_actions'])
    assert set(single.record()) == {'next_actions'} and single.record()['next_actions'].shape == (2, 2)


# ----------------------------------------------------------------------------- evaluation

def chunked_states(noise=0.0, members=1, horizon_length=H):
    agent = load_agent(AGENT)
    config = agent.get_config()
    config.horizon_length, config.noise = horizon_length, noise
    example = {k: np.asarray(v) for k, v in synthetic_batch(batch_size=2).items()}
    states, _ = init_members(agent, [config] * members, list(range(members)), example, log=QUIET)
    return agent, states


def counted(policy):
    def call(*args):
        call.count += 1
        return policy(*args)
    call.count = 0
    return call


def evaluate(agent, states, episodes, max_envs, horizon_length=H, members=1):
    RecordingEnv.made = []
    envs = EvalEnvs(RecordingEnv, members, episodes, workers=1, max_envs=max_envs)
    policy = counted(make_policy(agent))
    stats = run_episodes(policy, states, envs, list(range(members)), 5, horizon_length=horizon_length)
    return stats, policy.count, [episode for env in RecordingEnv.made for episode in env.recorded()]


def test_evaluation_executes_each_chunk_open_loop_and_starts_every_episode_with_a_new_one():
    agent, states = chunked_states()
    stats, _, episodes = evaluate(agent, states, episodes=12, max_envs=2)
    assert len(episodes) == 12
    for observations, actions in episodes:
        np.testing.assert_allclose(actions, expected_episode_actions(observations), rtol=0, atol=1e-6)
    # Episodes that ended mid-chunk were followed, in their environment, by one that began with a new chunk.
    followed = [env.recorded() for env in RecordingEnv.made]
    assert any(len(o) % H and i + 1 < len(runs) for runs in followed for i, (o, _) in enumerate(runs))
    np.testing.assert_array_equal(stats['episode_length'], [np.mean([len(o) for o, _ in episodes])])


def test_a_chunk_costs_one_policy_call():
    agent, states = chunked_states()
    _, calls, episodes = evaluate(agent, states, episodes=5, max_envs=1)  # one episode at a time
    lengths = [len(o) for o, _ in episodes]
    assert calls == sum(-(-length // H) for length in lengths) < sum(lengths)
    agent, states = chunked_states(horizon_length=1)  # without chunks: a call per step
    _, calls, episodes = evaluate(agent, states, episodes=5, max_envs=1, horizon_length=1)
    assert [len(o) for o, _ in episodes] == lengths and calls == sum(lengths)


def test_chunked_evaluation_does_not_depend_on_the_pool_size():
    agent, states = chunked_states(noise=0.01, members=2)
    one, _, first = evaluate(agent, states, episodes=6, max_envs=1, members=2)
    four, _, second = evaluate(agent, states, episodes=6, max_envs=4, members=2)
    for key in ('success', 'episode_return', 'episode_length'):
        np.testing.assert_array_equal(one[key], four[key], err_msg=key)
    as_set = lambda episodes: sorted((o.tobytes(), a.tobytes()) for o, a in episodes)
    assert as_set(first) == as_set(second)


# ----------------------------------------------------------------------------- runs: online and resume

@pytest.fixture(scope='module')
def world():
    with pytest.MonkeyPatch.context() as patch:
        use_fake_world(patch)
        patch.setattr('flowrl.run.runner.env_factory', lambda *args, **kwargs: RecordingEnv)
        patch.setattr('flowrl.run.runner.ChunkPacer', OneUpdateChunks)
        yield patch


def chunked_run(save_dir, **changes):
    return Run(tiny_run_settings(save_dir, **{**CHUNKED, **ONLINE, **changes}), log=QUIET)


@pytest.fixture(scope='module')
def straight(world, tmp_path_factory):
    """2 seeds, 4 offline updates then 8 online steps with chunks of 3; evaluations and saves every 4."""
    run = chunked_run(tmp_path_factory.mktemp('straight'), num_seeds=2)
    run.train()
    return run


def read(run_dir, name):
    rows = run_files.CsvLog(os.path.join(run_dir, name)).read()
    return [{k: v for k, v in row.items() if k != 'env_steps_per_s'} for row in rows]


def test_online_members_act_on_chunks_from_the_updated_agent_and_store_single_steps(straight):
    envs = straight.online.envs.pool.local.envs  # one environment per member, stepped at updates 5-12
    buffers = jax.device_get(straight.position.buffers)
    for member, env in enumerate(envs):
        episodes = env.episodes  # the last one may have no step yet
        observations = [np.asarray(o) for o, _ in episodes if o]
        actions = [np.asarray(a) for _, a in episodes if a]
        update = 5  # the update at which each step is taken; its chunk was sampled after the update before it
        for o, a in zip(observations, actions):
            agent_steps = np.arange(update, update + len(o)) - 1
            np.testing.assert_allclose(a, expected_episode_actions(o, agent_steps), rtol=0, atol=1e-6)
            update += len(o)
        assert update == 13
        # The buffer holds one transition per step: the observation and the action executed.
        np.testing.assert_array_equal(buffers.size[member], 8)
        np.testing.assert_array_equal(buffers.data['actions'][member, :8], np.concatenate(actions))
        np.testing.assert_array_equal(buffers.data['observations'][member, :8], np.concatenate(observations))
    assert any(len(o) % H for env in envs for o, _ in env.recorded()[:-1])  # an episode ended mid-chunk


def test_the_horizon_length_is_recorded_and_a_resume_cannot_change_it(straight):
    assert run_files.read_json(os.path.join(straight.run_dir, run_files.FLAGS_FILE))['settings']['horizon_length'] == H
    with pytest.raises(UserError, match='not --horizon_length'):
        resume(straight.run_dir, {'horizon_length': 1}, log=QUIET)
    with pytest.raises(UserError, match='--horizon_length must be a positive integer, got 0'):
        check_settings(tiny_run_settings('exp', horizon_length=0))


def test_a_run_stopped_mid_chunk_resumes_exactly(straight, tmp_path, monkeypatch):
    stop_online_after_step(monkeypatch, 10)  # 6 online steps: mid-chunk for a member whose episode began at 5 or 9
    run = chunked_run(tmp_path, num_seeds=2)
    with pytest.raises(stopping.Stopped):
        run.train()
    monkeypatch.undo()
    like = dict(episodes=run.online.abstract_episodes())
    saved = checkpoints.read_part(run.checkpoint_dir, like, 10)['episodes']
    taken = np.asarray(saved['chunk_taken'])
    assert np.any((taken > 0) & (taken < H)), taken  # the checkpoint holds chunks partly executed
    resumed = Run(run.s, run_dir=run.run_dir, log=QUIET)
    resumed.restore()
    np.testing.assert_array_equal(resumed.position.queues.taken, taken)
    resumed.train()
    for name in (run_files.TRAIN_CSV, run_files.EVAL_CSV):
        assert read(run.run_dir, name) == read(straight.run_dir, name), name
    buffers = [jax.device_get(run.position.buffers) for run in (resumed, straight)]
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, *buffers)))


def test_a_run_that_crashed_mid_chunk_resumes_exactly_from_its_checkpoint(straight, tmp_path, monkeypatch):
    """A crash while evaluating at update 8 (four online steps in): the checkpoint saved before that
    evaluation holds the chunks partly executed, and the resumed run's logs equal the uninterrupted ones."""
    crash_at_evaluation(monkeypatch, 8)
    run = chunked_run(tmp_path, num_seeds=2)
    with pytest.raises(KeyboardInterrupt):
        run.train()
    monkeypatch.undo()
    like = dict(episodes=run.online.abstract_episodes())
    taken = np.asarray(checkpoints.read_part(run.checkpoint_dir, like, 8)['episodes']['chunk_taken'])
    assert np.any((taken > 0) & (taken < H)), taken
    resume(run.run_dir, log=QUIET)
    for name in (run_files.TRAIN_CSV, run_files.EVAL_CSV):
        assert read(run.run_dir, name) == read(straight.run_dir, name), name


def test_evaluating_a_saved_chunked_run_acts_on_its_chunks(straight):
    """flowrl.run.evaluate_run reads --horizon_length from the run: its table at the last
    checkpoint is the run's own last evaluation."""
    from flowrl.run.evaluate_run import evaluate_values

    rows = evaluate_values(straight.run_dir, {}, workers=1, log=QUIET)
    logged = [r for r in read(straight.run_dir, run_files.EVAL_CSV) if int(r['step']) == 12]
    assert len(rows) == len(logged) == 2
    for row, expected in zip(rows, logged):
        for key in ('success', 'episode_return', 'episode_length'):
            assert row[key] == float(expected[key]), key
