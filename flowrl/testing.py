"""Helpers for testing agents on tiny problems (used by the test suite; handy for new agents)."""

import functools
import glob
import importlib
import os
import struct
import types

import jax
import jax.numpy as jnp
import numpy as np

from flowrl.registry.agent_loading import own_agent_names
from flowrl.suites import LoadedData


def agent_names() -> list[str]:
    """Every agent module of flowrl.agents (file stems), sorted."""
    return own_agent_names()


def import_agent(name: str):
    return importlib.import_module(f'flowrl.agents.{name}')


def tiny_config(agent, hidden=(32, 32), batch_size=16, **overrides):
    """The agent's default config with small networks and batches, for fast tests."""
    config = agent.get_config()
    for key in config:
        if key.endswith('hidden_dims'):
            config[key] = tuple(hidden)
    config.batch_size = batch_size
    for key, value in overrides.items():
        config[key] = value
    return config


def synthetic_batch(rng_seed=0, batch_size=16, obs_dim=6, action_dim=3):
    """A random batch of transitions with the fields every agent reads."""
    rng = np.random.default_rng(rng_seed)
    obs = rng.normal(size=(batch_size, obs_dim)).astype(np.float32)
    actions = rng.uniform(-0.99, 0.99, size=(batch_size, action_dim)).astype(np.float32)
    return dict(
        observations=jnp.asarray(obs),
        actions=jnp.asarray(actions),
        next_actions=jnp.asarray(np.roll(actions, -1, axis=0)),
        rewards=jnp.asarray(-rng.integers(0, 2, size=batch_size).astype(np.float32)),
        masks=jnp.asarray(rng.integers(0, 2, size=batch_size).astype(np.float32)),
        terminals=jnp.zeros(batch_size, jnp.float32),
        next_observations=jnp.asarray(obs + 0.1 * rng.normal(size=obs.shape).astype(np.float32)),
    )


def stack(trees):
    """Stacks a list of pytrees along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def index(tree, i):
    """Member i of a stacked pytree."""
    return jax.tree.map(lambda x: x[i], tree)


def _leaf_max_abs_diff(x, y) -> float:
    """0 where the values are equal (infinities included, e.g. grad_clip=inf; NaN matches NaN),
    inf where only one is NaN, else the largest |x - y|."""
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    with np.errstate(invalid='ignore'):  # inf - inf where `same` already answers
        diffs = np.where(same, 0.0, np.abs(x - y))
    return float(np.max(np.where(np.isnan(diffs), np.inf, diffs), initial=0.0))


def max_abs_diff(a, b) -> float:
    # On the host: the two trees may live on different devices (e.g. a sharded run and a single one).
    return max(jax.tree.leaves(jax.tree.map(_leaf_max_abs_diff, a, b)) or [0.0])


class FakeEnv:
    """A cheap stand-in for an OGBench environment (obs 6, actions 3, like `synthetic_batch`):
    episodes of 2-9 steps whose length, observations and reward depend on the reset seed and
    the actions, so evaluation tests see every episode's seed and noise without MuJoCo."""

    spec = types.SimpleNamespace(max_episode_steps=9)  # gymnasium's time limit, as OGBench's envs have

    def __init__(self, obs_dim=6, action_dim=3):
        import gymnasium

        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)

    def reset(self, seed=None):
        rng = np.random.default_rng(seed)
        self._obs = rng.normal(size=self.observation_space.shape).astype(np.float32)
        self._left = int(rng.integers(2, 10))
        return self._obs.copy(), {}

    def step(self, action):
        action = np.asarray(action, np.float32)
        self._obs = np.tanh(self._obs + np.resize(action, self._obs.shape)).astype(np.float32)
        self._left -= 1
        reward = float(-np.sum((action - 0.1) ** 2))
        return self._obs.copy(), reward, False, self._left == 0, {'success': float(reward > -0.5)}


TINY_RUN_OVERRIDES = dict(actor_hidden_dims='8,8', batch_size='8', flow_steps='2')


def tiny_run_settings(save_dir, **changes):
    """RunSettings of an 8-update flow BC run (tiny networks) that logs every 2 updates and
    evaluates and saves every 4; meant for `use_fake_world`."""
    from flowrl.run.runner import RunSettings

    settings = dict(agent='agents/flow_bc.py', env_name='cube-single-play', offline_steps=8, log_interval=2,
                    eval_interval=4, eval_episodes=2, eval_workers=1, save_interval=4, save_dir=str(save_dir),
                    agent_overrides=dict(TINY_RUN_OVERRIDES), report=False)  # the report: tests/test_main.py
    return RunSettings(**{**settings, **changes})


_CHUNK_RUNNERS = {}


def _shared_chunk_runner(agent, batch_size, execution='auto', config=None, p_aug=0.0, placement=None):
    from flowrl.engine.training import ChunkRunner

    key = (agent, batch_size, execution, None if config is None else repr(config.to_dict()), p_aug, placement)
    if key not in _CHUNK_RUNNERS:
        _CHUNK_RUNNERS[key] = ChunkRunner(agent, batch_size, execution, config, p_aug, placement)
    return _CHUNK_RUNNERS[key]


@functools.cache
def _shared_online_program(agent, batch_size, execution, balanced, buffer_size, placement=None, horizon=1):
    from flowrl.engine.online import OnlineProgram

    return OnlineProgram(agent, batch_size, execution, balanced, buffer_size, placement, horizon)


@functools.cache
def _shared_policy(agent, execution='auto'):
    from flowrl.engine.evaluation import make_policy

    return make_policy(agent, execution)


def use_fake_world(monkeypatch, validation: bool = False):
    """Makes runs (flowrl.run.runner, flowrl.run.evaluate_run) train on `synthetic_batch` data (and, with
    `validation`, validate on another synthetic batch) and evaluate on FakeEnv, and share their
    compiled programs across runs, so a test can afford several."""
    dataset = {k: np.asarray(v) for k, v in synthetic_batch(batch_size=256).items()}
    val = {k: np.asarray(v) for k, v in synthetic_batch(rng_seed=1, batch_size=64).items()} if validation else None
    monkeypatch.setattr('flowrl.run.runner.load_dataset',
                        lambda *args, **kwargs: LoadedData(dict(dataset), val, 'synthetic data', {}))
    monkeypatch.setattr('flowrl.run.runner.env_factory', lambda *args, **kwargs: FakeEnv)
    monkeypatch.setattr('flowrl.run.runner.ChunkRunner', _shared_chunk_runner)
    monkeypatch.setattr('flowrl.run.runner.make_policy', _shared_policy)
    monkeypatch.setattr('flowrl.run.runner.OnlineProgram', _shared_online_program)
    monkeypatch.setattr('flowrl.run.evaluate_run.example_batch', lambda spec: {k: v[:2] for k, v in dataset.items()})
    monkeypatch.setattr('flowrl.run.evaluate_run.make_policy', _shared_policy)


FAKE_SHARD_DATASET = 'fake-play-v0'  # the file names of `write_fake_shards`


def write_fake_shards(directory, shards: int = 8, episodes: int = 3, steps: int = 6, seed: int = 0) -> str:
    """A directory in OGBench's sharded layout (`<name>-000.npz`, ..., `<name>-val.npz`) of rows the
    size of `synthetic_batch` (observations 6, actions 3): `shards` files of `episodes` whole
    episodes of `steps` rows each (`terminals` 1 on an episode's last row), and a validation file
    of one shard's size. Each shard's observations start at its index, so a test can tell the
    shards apart. Returns the directory."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)

    def rows(offset: float) -> dict:
        count = episodes * steps
        terminals = np.zeros(count, np.float32)
        terminals[steps - 1::steps] = 1.0
        return dict(observations=(offset + rng.normal(size=(count, 6))).astype(np.float32),
                    actions=rng.uniform(-0.99, 0.99, size=(count, 3)).astype(np.float32),
                    rewards=-rng.integers(0, 2, size=count).astype(np.float32), terminals=terminals)

    for index in range(shards):
        np.savez(os.path.join(directory, f'{FAKE_SHARD_DATASET}-{index:03d}.npz'), **rows(float(index)))
    np.savez(os.path.join(directory, f'{FAKE_SHARD_DATASET}-val.npz'), **rows(-1.0))
    return str(directory)


def fake_shards(dataset_dir):
    """The Shards (flowrl.suites.data.shards) of a `write_fake_shards` directory, read as OGBench's
    files are (rows to transitions) without an environment's relabelling; None for another directory."""
    from flowrl.suites.data import shards

    if not shards.is_shard_directory(dataset_dir, FAKE_SHARD_DATASET):
        return None
    read = lambda path: shards.episode_transitions(dict(np.load(path)))  # noqa: E731
    val_file = shards.validation_file(dataset_dir)
    files = tuple(str(path) for path in shards.shard_files(dataset_dir))
    source = f'fake shards in {dataset_dir}'
    return shards.Shards(files, None if val_file is None else read(str(val_file)), read, source,
                         dict(source=source, shard_names=[os.path.basename(path) for path in files]))


def use_fake_shards(monkeypatch):
    """With `use_fake_world`: a run whose --dataset_dir is a `write_fake_shards` directory streams it."""
    monkeypatch.setattr('flowrl.run.runner.load_shards', lambda s, task, log=None: fake_shards(s.dataset_dir))


def short_manipulation_episodes(monkeypatch, steps: int = 6) -> None:
    """Makes the manipulation datasets built in this process (with workers=1) have `steps`-step
    episodes, so that a test builds a reduced visual dataset through the normal name resolution
    from a few dozen rendered frames (about 0.2 s each on a CPU) instead of 1001 per episode, e.g.
    `flowrl.making.ogbench.produce_dataset('visual-cube-single-play-v0', dataset_episodes=1, workers=1, ...)`. The
    files keep their normal names ('visual-cube-single-play-v0-ep1.npz'), so a later process (a
    main.py run given the same --dataset_dir and --dataset_episodes) finds and uses them."""
    monkeypatch.setattr('flowrl.suites.data.protocol.MANIPULATION_STEPS', steps)


def tensorboard_events(directory) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in the TFRecord-framed event files tensorboardX wrote
    into `directory` (--logger=tensorboard), in the order written, repeats included."""
    from tensorboardX.proto import event_pb2

    found = []
    for path in sorted(glob.glob(os.path.join(directory, 'events.out.tfevents.*'))):
        with open(path, 'rb') as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack('<Q', data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4  # length, its crc, the record, its crc
            found += [(value.tag, event.step, value.simple_value) for value in event.summary.value]
    return found


class OneUpdateChunks:
    """A ChunkPacer (flowrl.run.progress) whose chunks are one update long: a stop lands on the
    update a test names (patch it over flowrl.run.runner.ChunkPacer)."""

    def size(self):
        return 1

    def record(self, updates, seconds):
        pass


def stop_online_after_step(monkeypatch, step: int):
    """A stop request (SIGTERM, as a scheduler sends it) right after the online environment step of
    update `step`."""
    import signal
    from flowrl.engine.online import MemberEnvs

    original = MemberEnvs.step

    def step_then_sigterm(self, actions, update):
        result = original(self, actions, update)
        if update == step:
            signal.raise_signal(signal.SIGTERM)
        return result

    monkeypatch.setattr(MemberEnvs, 'step', step_then_sigterm)


def crash_at_evaluation(monkeypatch, step: int):
    """A crash (KeyboardInterrupt) as the run starts its evaluation at update `step`."""
    from flowrl.run.record import RunRecord

    original = RunRecord.evaluate

    def crash(self, position):
        if position.step == step:
            raise KeyboardInterrupt
        return original(self, position)

    monkeypatch.setattr(RunRecord, 'evaluate', crash)
