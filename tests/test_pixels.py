"""Pixel observations: the IMPALA encoder, frame stacking by index, random-crop augmentation,
visual files loaded as frames, the frame-stacking environment, and main.py end to end on a
rendered dataset (rendering costs ~0.2 s a frame here, so that dataset has 6-step episodes)."""

import csv
import importlib
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from flowrl.kit import contract, pixels
from flowrl.suites.data.loading import load_frames, load_states
from flowrl.kit.encoders import (ENCODERS, IMAGE_LAYOUT, apply_head, conv_with_canonical_grads, encode,
                             loop_friendly_conv, make_encoder, with_encoders)
from flowrl.suites.ogbench_envs import FrameStack, gym_make
from flowrl.errors import UserError
from flowrl.kit.flow import euler_integrate, euler_samples
from flowrl.kit.networks import VelocityField
from flowrl.testing import short_manipulation_episodes, synthetic_batch, tiny_config
from flowrl.engine.sampling import sample_batch

AGENTS = ('flow_bc', 'fql', 'ifql', 'iql', 'rebrac', 'sac', 'qfql', 'flowq', 'qipo')


def images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ----------------------------------------------------------------------------- encoder


def impala_parameter_count(in_channels, stack_sizes, num_blocks, image_size, mlp_dim):
    """Closed form: per stack one conv from the previous width and 2 * num_blocks convs at its
    width (3x3 kernels + biases); each stack halves the image (SAME pooling, stride 2); then one
    dense layer from the flattened features."""
    count, width, size = 0, in_channels, image_size
    for features in stack_sizes:
        count += (9 * width + 1) * features + 2 * num_blocks * (9 * features + 1) * features
        width, size = features, -(-size // 2)
    return count + (size * size * width + 1) * mlp_dim


@pytest.mark.parametrize('name, stacks, blocks, mlp', [('impala_small', (16, 32, 32), 1, 512)])
def test_impala_encoder_architecture(name, stacks, blocks, mlp):
    encoder = make_encoder(name)
    # The authors' ImpalaEncoder('impala_small') on 64x64x9 frames has 1,105,920 parameters.
    assert impala_parameter_count(9, stacks, blocks, 64, mlp) == 1_105_920
    assert impala_parameter_count(9, stacks, 2, 64, mlp) == 1_147_552  # 'impala'
    frames = images((2, 24, 24, 9))  # 24 -> 12 -> 6 -> 3
    params = jax.jit(encoder.init)(jax.random.PRNGKey(0), frames)
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == impala_parameter_count(9, stacks, blocks, 24, mlp)
    apply = jax.jit(encoder.apply)
    features = apply(params, frames)
    assert features.shape == (2, mlp) and features.dtype == jnp.float32
    # uint8 images are converted inside: the same pixel values given as floats agree.
    np.testing.assert_allclose(apply(params, frames.astype(np.float32)), features, rtol=1e-5, atol=1e-5)
    # Any leading axes: [2, 3, H, W, C] -> [2, 3, F], equal to the rows encoded alone.
    many = images((2, 3, 24, 24, 9), seed=1)
    np.testing.assert_allclose(apply(params, many)[1, 2], apply(params, many[1, 2:3])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('pads', [((1, 1), (1, 1)), ((0, 2), (2, 0)), ((0, 0), (0, 0))])
def test_convolution_gradients_equal_lax_gradients(pads):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 7, 6, 4)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 4, 5)), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=jax.eval_shape(lambda: jax.lax.conv_general_dilated(
        x, kernel, (1, 1), pads, dimension_numbers=IMAGE_LAYOUT)).shape), jnp.float32)

    def gradients(conv):
        return jax.grad(lambda x, k: jnp.sum(conv(x, k) * cotangent), (0, 1))(x, kernel)

    expected = gradients(lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), pads, dimension_numbers=IMAGE_LAYOUT))
    for got, want in zip(gradients(lambda x, k: conv_with_canonical_grads(x, k, pads)), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Cases it does not cover (strides) go to lax unchanged.
    strided = loop_friendly_conv(x, kernel, (2, 2), 'SAME', dimension_numbers=IMAGE_LAYOUT)
    np.testing.assert_array_equal(strided, jax.lax.conv_general_dilated(x, kernel, (2, 2), 'SAME',
                                                                        dimension_numbers=IMAGE_LAYOUT))


def test_encoder_gradients_inside_a_loop_use_only_canonical_convolutions():
    """XLA:CPU runs a convolution in its fast layout only when its HLO is canonical
    (b01f_01io->b01f); inside a while loop it leaves lax's own kernel gradient non-canonical (70x
    slower at IMPALA's sizes). Every convolution of the encoder's update in a loop must be canonical."""
    encoder = make_encoder('impala_debug')
    frames = images((2, 16, 16, 3))
    params = encoder.init(jax.random.PRNGKey(0), frames)
    grad = jax.grad(lambda p: jnp.sum(encoder.apply(p, frames) ** 2))

    def steps(params):
        return jax.lax.scan(lambda p, _: (jax.tree.map(lambda a, g: a - 1e-3 * g, p, grad(p)), None),
                            params, None, length=2)[0]

    hlo = jax.jit(steps).lower(params).compile().as_text()
    labels = re.findall(r'convolution\(.*?dim_labels=(\S+?),', hlo)
    # 2 stacks x 3 convolutions: 6 forward, 6 kernel gradients, 5 input gradients (not the image's).
    assert len(labels) == 6 + 6 + 5
    assert set(labels) == {'b01f_01io->b01f'}, labels


def test_unknown_encoder_is_one_sentence():
    with pytest.raises(UserError, match="Unknown encoder 'resnet'; use one of impala"):
        make_encoder('resnet')
    assert set(ENCODERS) >= {'impala', 'impala_small', 'impala_large'}


def test_every_network_gets_its_own_encoder_and_none_leaves_networks_unchanged():
    fql = importlib.import_module('flowrl.agents.fql')
    example = synthetic_batch(batch_size=2, obs_dim=5)
    plain = fql.init(jax.random.PRNGKey(0), example, ml_collections.FrozenConfigDict(tiny_config(fql)))
    undecorated = fql.networks.__wrapped__  # what with_encoders wraps
    nets = undecorated(plain.config)
    params = nets['critic'].init(jax.random.split(jax.random.PRNGKey(0), 3)[0], example['observations'],
                                 example['actions'])['params']
    assert jax.tree.all(jax.tree.map(np.array_equal, params, plain.params['critic']))

    example['observations'] = images((2, 16, 16, 6))
    config = ml_collections.FrozenConfigDict(tiny_config(fql, encoder='impala_debug'))
    state = jax.jit(fql.init, static_argnums=2)(jax.random.PRNGKey(0), example, config)
    assert set(state.params) == {'critic', 'actor_bc_flow', 'actor_onestep_flow'}
    encoders = [state.params[name]['encoder'] for name in state.params]
    assert all(set(p) == {'encoder', 'net'} for p in state.params.values())
    kernels = [jax.tree.leaves(e['ResidualStack_0']['Conv_0']['kernel']) for e in encoders]
    assert not np.array_equal(kernels[0], kernels[1]) and not np.array_equal(kernels[1], kernels[2])
    # The critic's loss moves the critic and its encoder only.
    grads = jax.jit(jax.grad(lambda p: fql.critic_loss(fql.networks(state.config), p, state.target_params, state.hparams,
                                               state.config,
                                               dict(example, next_observations=images((2, 16, 16, 6), 2)),
                                               jax.random.PRNGKey(1))[0]))(state.params)
    moved = {name: any(np.abs(g).max() > 0 for g in jax.tree.leaves(grads[name])) for name in grads}
    assert moved == {'critic': True, 'actor_bc_flow': False, 'actor_onestep_flow': False}
    assert any(np.abs(g).max() > 0 for g in jax.tree.leaves(grads['critic']['encoder']))


def test_euler_samples_encode_once_and_equal_encoding_at_every_step():
    net = with_encoders(lambda config: dict(flow=VelocityField((16,), 2)))(
        ml_collections.FrozenConfigDict(dict(encoder='impala_debug')))['flow']
    observations, noises = images((3, 16, 16, 3)), jax.random.normal(jax.random.PRNGKey(1), (3, 2))
    params = jax.jit(net.init)(jax.random.PRNGKey(0), observations, noises, jnp.zeros((3, 1)))['params']
    fast = jax.jit(lambda p: euler_samples(net, p, observations, noises, 4))(params)
    naive = jax.jit(lambda p: euler_integrate(lambda x, t: net.apply({'params': p}, observations, x, t), noises, 4))(
        params)
    np.testing.assert_allclose(fast, naive, rtol=1e-6, atol=1e-6)
    features = encode(net, params, observations)
    assert features.shape == (3, 512)
    np.testing.assert_array_equal(apply_head(net, params, features, noises, jnp.zeros((3, 1))),
                                  net.apply({'params': params}, observations, noises, jnp.zeros((3, 1))))


@pytest.mark.parametrize('name', AGENTS)
def test_every_agent_takes_image_observations(name):
    """init, update and sample_actions with images (traced, not compiled: shapes and structure)."""
    agent = importlib.import_module(f'flowrl.agents.{name}')
    batch = synthetic_batch(batch_size=4)
    batch['observations'], batch['next_observations'] = images((4, 16, 16, 6)), images((4, 16, 16, 6), 1)
    batch = contract.hook(agent, 'prepare_dataset')(batch)
    config = ml_collections.FrozenConfigDict(tiny_config(agent, encoder='impala_debug', batch_size=4))
    state = jax.eval_shape(lambda rng, b: agent.init(rng, b, config), jax.random.PRNGKey(0), batch)
    assert all('encoder' in params for name, params in state.params.items() if isinstance(params, dict)
               and 'net' in params)
    new_state, metrics = jax.eval_shape(agent.update, state, batch, jax.random.PRNGKey(1))
    assert jax.tree.map(lambda a: a.shape, new_state.params) == jax.tree.map(lambda a: a.shape, state.params)
    assert jax.eval_shape(agent.sample_actions, state, batch['observations'][:3], jax.random.PRNGKey(2)).shape == (3, 3)
    assert jax.eval_shape(agent.sample_actions, state, batch['observations'][0], jax.random.PRNGKey(2)).shape == (3,)


# ----------------------------------------------------------------------------- frame stacking


def authors_stacked(observations, terminals, index, k):
    """The authors' rule, written out: observation t of a transition dataset is
    [ob[max(t - k + 1, first)], ..., ob[t]] where `first` starts t's episode (terminals end one)."""
    first = index
    while first > 0 and not terminals[first - 1]:
        first -= 1
    return np.concatenate([observations[max(index - i, first)] for i in reversed(range(k))], axis=-1)


def synthetic_visual_file(path, episodes=(5, 3, 6), image=(4, 4, 3), seed=0):
    """An OGBench-layout visual file: rows of episodes, `terminals` on each episode's last row."""
    rng = np.random.default_rng(seed)
    rows = sum(episodes)
    terminals = np.zeros(rows, bool)
    terminals[np.cumsum(episodes) - 1] = True
    qpos = rng.normal(scale=0.1, size=(rows, 21)).astype(np.float32)
    qpos[:, 14:17] += np.array([0.425, 0.0, 0.02], np.float32)  # cube 0 near task 1's goal on some rows
    np.savez(path, observations=images((rows,) + image, seed), actions=rng.uniform(-1, 1, (rows, 5)).astype(np.float32),
             terminals=terminals, qpos=qpos, qvel=rng.normal(size=(rows, 20)).astype(np.float32))
    return path


def test_stack_indices_stop_at_episode_starts():
    # rows 10..13 form an episode starting at 10; k = 3
    indices = pixels.stack_indices(np.array([10, 11, 12, 13]), np.array([10, 10, 10, 10]), 3)
    np.testing.assert_array_equal(indices, [[10, 10, 10], [10, 10, 11], [10, 11, 12], [11, 12, 13]])


@pytest.mark.parametrize('k', [1, 3])
def test_visual_file_loads_as_ogbench_transitions_with_frames_stacked_by_the_authors_rule(tmp_path, k):
    import ogbench.utils

    path = synthetic_visual_file(tmp_path / 'visual-cube-single-play-v0.npz')
    env_id = 'visual-cube-single-singletask-task1-v0'
    env = gym_make(env_id)
    try:
        frames = load_frames(env_id, env, path, k)
        reference = load_states(env_id, env, path)  # OGBench's loader and relabelling, materialised
    finally:
        env.close()
    reference_obs = ogbench.utils.load_dataset(str(path), ob_dtype=np.uint8)['observations']
    n = len(reference['actions'])
    assert n == 14 - 3 and frames['frames'].shape == (14, 4, 4, 3) and frames['frames'].dtype == np.uint8
    for key in ('actions', 'rewards', 'masks', 'terminals'):
        np.testing.assert_array_equal(frames[key], reference[key], err_msg=key)
    batch = pixels.gather_transitions(frames, np.arange(n))
    assert batch['observations'].shape == (n, 4, 4, 3 * k) and batch['observations'].dtype == jnp.uint8
    for t in range(n):
        np.testing.assert_array_equal(batch['observations'][t],
                                      authors_stacked(reference_obs, reference['terminals'], t, k))
        # next observation: the stack one step later, its newest frame the transition's next frame
        expected_next = np.concatenate(
            [authors_stacked(reference_obs, reference['terminals'], t, k)[..., 3:],
             np.asarray(reference['next_observations'][t], np.uint8)], axis=-1)
        np.testing.assert_array_equal(batch['next_observations'][t], expected_next)


# ----------------------------------------------------------------------------- augmentation


def frame_batch_dataset(n=64, k=2, seed=0):
    frames = images((n + 1, 12, 12, 3), seed)
    return pixels.frame_dataset(frames, np.arange(n), np.zeros(n, np.int64), k,
                                actions=np.zeros((n, 2), np.float32), rewards=np.zeros(n, np.float32))


def test_random_crops_shift_each_transition_and_share_its_crop():
    batch = pixels.gather_transitions(frame_batch_dataset(), np.arange(16))
    cropped = pixels.random_crops(batch, jax.random.PRNGKey(3))
    padding = pixels.CROP_PADDING
    shifts = []
    for i in range(16):
        obs = np.pad(batch['observations'][i], ((padding, padding), (padding, padding), (0, 0)), mode='edge')
        nxt = np.pad(batch['next_observations'][i], ((padding, padding), (padding, padding), (0, 0)), mode='edge')
        matches = [(r, c) for r in range(2 * padding + 1) for c in range(2 * padding + 1)
                   if np.array_equal(obs[r:r + 12, c:c + 12], cropped['observations'][i])]
        assert matches, i
        assert any(np.array_equal(nxt[r:r + 12, c:c + 12], cropped['next_observations'][i]) for r, c in matches)
        shifts.append(matches[0])
    assert len(set(shifts)) > 4  # corners differ between transitions


def test_augmentation_probability_is_per_batch_and_leaves_the_sampled_transitions():
    dataset = jax.device_put(frame_batch_dataset())
    draw = jax.jit(lambda key, p: sample_batch(dataset, key, 8, p), static_argnums=1)
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    augmented = 0
    for key in keys:
        plain, maybe = draw(key, 0.0), draw(key, 0.3)
        np.testing.assert_array_equal(plain['actions'], maybe['actions'])
        same = [np.array_equal(plain['observations'][i], maybe['observations'][i]) for i in range(8)]
        augmented += not all(same)  # a cropped batch: some image moved (a crop at the centre moves none)
    # Binomial(400, 0.3): mean 120, sd 9.2; every cropped batch has some moved image (8 corners
    # all at the centre has probability 49^-8).
    assert 90 < augmented < 150
    np.testing.assert_array_equal(draw(keys[0], 0.0)['observations'], sample_batch(dataset, keys[0], 8)['observations'])


# ----------------------------------------------------------------------------- evaluation stack


class _CountingEnv:
    """Observations [2, 2, 1] filled with the step count (0 after a reset)."""

    def __init__(self):
        import gymnasium

        self.observation_space = gymnasium.spaces.Box(0, 255, (2, 2, 1), np.uint8)
        self.action_space = gymnasium.spaces.Box(-1, 1, (1,), np.float32)
        self.t = 0

    def reset(self, **kwargs):
        self.t = 0
        return np.full((2, 2, 1), 0, np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.full((2, 2, 1), self.t, np.uint8), 0.0, False, False, {}


def test_frame_stack_env_matches_dataset_stacking():
    import gymnasium

    class Env(_CountingEnv, gymnasium.Env):
        pass

    env = FrameStack(Env(), 3)
    assert env.observation_space.shape == (2, 2, 3) and env.observation_space.dtype == np.uint8
    seen = [env.reset()[0]] + [env.step(np.zeros(1))[0] for _ in range(3)]
    assert [list(o[0, 0]) for o in seen] == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3]]
    # The dataset of that episode, stacked by index, gives the same observations.
    frames = np.stack([np.full((2, 2, 1), t, np.uint8) for t in range(5)])
    dataset = pixels.frame_dataset(frames, np.arange(4), np.zeros(4, np.int64), 3, actions=np.zeros((4, 1)))
    stacked = pixels.gather_transitions(dataset, np.arange(4))['observations']
    np.testing.assert_array_equal(np.asarray(stacked), np.stack(seen))


# ----------------------------------------------------------------------------- main.py


@pytest.fixture(scope='module')
def visual_home(tmp_path_factory):
    """A HOME whose ~/.ogbench/data (the default dataset directory) holds visual-cube-single-play-v0-ep1
    with 6-step episodes (1 + 1 validation episode, 12 frames)."""
    from flowrl.making.ogbench import produce_dataset

    home = tmp_path_factory.mktemp('visual')
    with pytest.MonkeyPatch.context() as patch:
        short_manipulation_episodes(patch, 6)
        produce_dataset('visual-cube-single-play-v0', dataset_dir=str(home / '.ogbench' / 'data'), dataset_episodes=1,
                        workers=1, log=lambda *a: None, download=False)
    return home


@pytest.mark.slow  # the slowest tests: run with -m slow (pyproject.toml)
def test_main_trains_and_evaluates_visual_fql_with_stacking_and_augmentation(visual_home, tmp_path):
    """As a user runs it: the dataset in the default directory, the run in exp/ of the working
    directory, every flag the test does not need to shrink at its default."""
    from tests.test_main import run_cli

    args = ['--env_name=visual-cube-single-play-singletask-task1-v0', '--dataset_episodes=1', '--offline_steps=6',
            '--log_interval=3', '--eval_interval=6', '--eval_episodes=1', '--agent.encoder=impala_debug',
            '--agent.actor_hidden_dims=16', '--agent.value_hidden_dims=16', '--agent.batch_size=4',
            '--p_aug=0.5', '--frame_stack=3']
    result = run_cli(args, visual_home, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Presets for visual-cube-single-play (configs/fql.py): alpha=300.0' in result.stdout
    assert '5 transitions (validation: 5)' in result.stdout
    (run_dir,) = [os.path.join(tmp_path, 'exp', 'Debug', d) for d in os.listdir(tmp_path / 'exp' / 'Debug')]
    with open(os.path.join(run_dir, 'train.csv')) as f:
        rows = list(csv.DictReader(f))
    assert [int(r['step']) for r in rows] == [3, 6]
    assert all(np.isfinite(float(r['critic/loss'])) and np.isfinite(float(r['validation/critic/loss'])) for r in rows)
    with open(os.path.join(run_dir, 'eval.csv')) as f:
        (evaluation,) = list(csv.DictReader(f))
    assert float(evaluation['episode_length']) == 200  # the task's time limit, with stacked pixel observations


@pytest.mark.parametrize('settings, message', [
    (dict(env_name='cube-single-play', frame_stack=3),
     '--frame_stack applies to pixel observations (visual-* environments), not to cube-single-play'),
    (dict(env_name='cube-single-play', p_aug=0.5), '--p_aug applies to pixel observations'),
    (dict(env_name='cube-single-play', agent_overrides={'encoder': 'impala_small'}), '--agent.encoder applies to pixel'),
    (dict(env_name='visual-cube-single-play', agent_overrides={'encoder': 'None'}),
     'visual-cube-single-play has pixel observations, which need an image encoder'),
    (dict(env_name='visual-cube-single-play', p_aug=1.5), '--p_aug must be a probability in [0, 1], got 1.5'),
    (dict(env_name='visual-cube-single-play', frame_stack=0), '--frame_stack must be a positive integer'),
    (dict(env_name='visual-cube-single-play', online_steps=5), 'Online fine-tuning is not supported with pixel'),
])
def test_pixel_options_are_refused_where_they_do_not_apply(settings, message, tmp_path):
    """Refused before any dataset is read (the dataset directory is empty)."""
    from flowrl.run.runner import Run, RunSettings

    with pytest.raises(UserError, match=re.escape(message)):
        Run(RunSettings(**settings, dataset_dir=str(tmp_path / 'none'), save_dir=str(tmp_path), dataset_episodes=1),
            log=lambda *a: None)
    assert not (tmp_path / 'none').exists()
