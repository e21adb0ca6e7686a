"""The on-device replay buffer (flowrl/engine/replay.py): exact contents after appends and wrap-around,
sampling below the size only, balanced sampling's halves, in-place appends, and its memory."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrl.engine import replay, sampling

SENTINEL = -7.0


def _dataset(rows, obs_dim=3, start=0.0):
    """Transitions whose every field holds its row number (+ start), so a sampled row says where it came from."""
    ids = start + np.arange(rows, dtype=np.float32)
    return dict(observations=np.repeat(ids[:, None], obs_dim, 1), actions=ids[:, None].copy(), rewards=ids.copy(),
                masks=np.ones(rows, np.float32), terminals=np.zeros(rows, np.float32),
                next_observations=np.repeat(ids[:, None] + 0.5, obs_dim, 1))


def _with_sentinel_rows(buffer):
    """Every row at or above `size` overwritten with SENTINEL."""
    unused = jnp.arange(buffer.capacity) >= buffer.size
    return buffer.replace(data=jax.tree.map(
        lambda x: jnp.where(unused.reshape((-1,) + (1,) * (x.ndim - 1)), SENTINEL, x), buffer.data))


def _filled(rows, capacity, start=0.0):
    """A buffer of `capacity` rows holding `_dataset(rows, start=start)`."""
    return replay.append(replay.empty_like(_dataset(1), capacity), _dataset(rows, start=start))


def test_append_writes_rows_in_order_and_wraps_around_at_capacity():
    buffer = _filled(3, capacity=5)
    buffer = replay.append(buffer, _dataset(1, start=10))  # row 3
    assert (int(buffer.size), int(buffer.insert)) == (4, 4)
    buffer = replay.append(buffer, _dataset(3, start=20))  # rows 4, 0, 1: the two oldest overwritten
    assert (int(buffer.size), int(buffer.insert)) == (5, 2)
    np.testing.assert_array_equal(buffer.data['rewards'], [21, 22, 2, 10, 20])
    np.testing.assert_array_equal(buffer.data['observations'][:, 0], [21, 22, 2, 10, 20])
    np.testing.assert_array_equal(buffer.data['next_observations'][:, 0], [21.5, 22.5, 2.5, 10.5, 20.5])
    buffer = replay.append(buffer, _dataset(5, start=30))  # exactly one full turn: back at row 2
    assert (int(buffer.size), int(buffer.insert)) == (5, 2)
    np.testing.assert_array_equal(buffer.data['rewards'], [33, 34, 30, 31, 32])


def test_append_casts_to_the_buffer_dtype_and_refuses_mismatched_transitions():
    buffer = replay.empty_like(_dataset(2), capacity=4)
    transition = {k: np.asarray(v, np.float64) for k, v in _dataset(1, start=0.25).items()}  # as an env returns
    buffer = replay.append(buffer, transition)
    assert buffer.data['observations'].dtype == jnp.float32 and float(buffer.data['rewards'][0]) == 0.25
    with pytest.raises(ValueError, match='fields'):
        replay.append(buffer, {k: v for k, v in transition.items() if k != 'masks'})
    with pytest.raises(ValueError, match="'observations' has rows of shape"):
        replay.append(buffer, dict(transition, observations=np.zeros((1, 4))))
    with pytest.raises(ValueError, match='Cannot append 5'):
        replay.append(buffer, _dataset(5))


@jax.jit
def _many_samples(buffer, rng):
    return jax.vmap(lambda r: sampling.buffer_batch(buffer, r, 32))(jax.random.split(rng, 200))


def test_sample_never_draws_at_or_above_the_size():
    # One compiled sampler (the size is traced) for buffers of different sizes.
    for size in (1, 7, 19):
        buffer = _with_sentinel_rows(_filled(size, capacity=20))
        batch = _many_samples(buffer, jax.random.PRNGKey(size))
        for key, values in batch.items():
            assert not np.any(np.asarray(values) == SENTINEL), (size, key)
        drawn = np.asarray(batch['rewards']).ravel()
        assert set(drawn.astype(int)) == set(range(size))  # every filled row is reachable
        np.testing.assert_array_equal(batch['observations'][..., 0], batch['rewards'])  # rows stay whole
    assert _many_samples._cache_size() == 1


def test_sample_after_wrap_around_covers_the_whole_buffer():
    buffer = replay.append(_filled(4, capacity=4), _dataset(1, start=10))
    drawn = set(np.asarray(_many_samples(buffer, jax.random.PRNGKey(0))['rewards']).ravel().astype(int))
    assert drawn == {10, 1, 2, 3}


def _authors_buffer(dataset_rows, buffer_size, online_ids):
    """The authors' single buffer (dataset first, online transitions after it, wrapping to row 0
    at capacity max(D, B)) as the set of reward ids it can sample; written out by hand."""
    capacity = max(dataset_rows, buffer_size)
    rows = list(range(dataset_rows)) + [None] * (capacity - dataset_rows)
    size = dataset_rows
    for k, transition_id in enumerate(online_ids):
        rows[(dataset_rows + k) % capacity] = transition_id
        size = min(size + 1, capacity)
    return set(rows[:size])


@functools.partial(jax.jit, static_argnums=2)
def _union_samples(dataset, online, buffer_size, rng):
    sample = lambda r: sampling.single_buffer_batch(dataset, online, r, 64, buffer_size)
    return jax.vmap(sample)(jax.random.split(rng, 100))


@pytest.mark.parametrize('dataset_rows, buffer_size, online_steps', [(5, 8, 12), (5, 3, 9), (5, 12, 4), (6, 6, 7)])
def test_sampling_with_the_dataset_draws_exactly_the_authors_buffer(dataset_rows, buffer_size, online_steps):
    """Without copying the dataset, every fill level (before and after the online rows wrap onto
    the dataset's) samples exactly the rows of the authors' buffer, and rows stay whole."""
    dataset = {k: jnp.asarray(v) for k, v in _dataset(dataset_rows).items()}
    capacity = replay.online_capacity(online_steps, dataset_rows, buffer_size, balanced=False)
    online = replay.empty_like(_dataset(1), capacity)
    for n in range(online_steps + 1):
        batch = _union_samples(dataset, online, buffer_size, jax.random.PRNGKey(n))
        drawn = set(np.asarray(batch['rewards']).ravel().astype(int))
        assert drawn == _authors_buffer(dataset_rows, buffer_size, range(1000, 1000 + n)), n
        np.testing.assert_array_equal(batch['observations'][..., 0], batch['rewards'])
        online = replay.append(online, _dataset(1, start=1000 + n))


def test_sampling_with_a_dataset_of_no_rows_draws_the_online_buffer_alone():
    """Training from scratch (the locomotion recipe's SAC): no dataset row beside the buffer, so the
    authors' buffer is the online one: the same rows `buffer_batch` draws with the same key, never a
    row at or above the size."""
    online = _with_sentinel_rows(_filled(5, capacity=8))
    empty = {k: jnp.asarray(v[:0]) for k, v in _dataset(1).items()}
    rng = jax.random.PRNGKey(3)
    batch = sampling.single_buffer_batch(empty, online, rng, 256, buffer_size=8)
    expected = sampling.buffer_batch(online, rng, 256)
    for key in batch:
        np.testing.assert_array_equal(batch[key], expected[key])
    assert set(np.asarray(batch['rewards']).astype(int)) == set(range(5))


def test_online_capacity_is_what_the_run_can_write_before_wrapping():
    assert replay.online_capacity(1_000_000, 1_000_000, 2_000_000, balanced=False) == 1_000_000
    assert replay.online_capacity(3_000_000, 1_000_000, 2_000_000, balanced=False) == 2_000_000
    assert replay.online_capacity(3_000_000, 5_000_000, 2_000_000, balanced=False) == 3_000_000
    assert replay.online_capacity(3_000_000, 5_000_000, 2_000_000, balanced=True) == 2_000_000


def test_successor_fields_follow_the_next_transition_within_an_episode():
    """ReBRAC's next_actions in the online buffer: the next row's action, or the row's own where
    the episode ended (as rebrac.prepare_dataset fills the dataset); the newest row holds its own."""
    from flowrl.agents import rebrac

    steps = _dataset(7, start=1)
    steps['terminals'] = np.array([0, 0, 1, 0, 1, 0, 0], np.float32)
    buffer = replay.empty_like(rebrac.prepare_dataset(_dataset(2)), capacity=5)
    for t in range(7):  # one transition per environment step, wrapping around at 5
        buffer = replay.append(buffer, {k: v[t:t + 1] for k, v in steps.items()})
        newest = t % 5
        assert float(buffer.data['next_actions'][newest, 0]) == steps['actions'][t, 0]
    expected = rebrac.prepare_dataset(steps)['next_actions'][:, 0]
    # Buffer rows 0..4 hold transitions 5, 6, 2, 3, 4 after the wrap-around.
    np.testing.assert_array_equal(buffer.data['next_actions'][:, 0], np.concatenate([expected[5:], expected[2:5]]))


@jax.jit
def _balanced(offline, online, rng):
    return sampling.balanced_batch(offline, online, rng, 10)


def test_balanced_sampling_takes_exactly_half_from_each():
    offline = _dataset(50)  # rows 0..49
    online = replay.append(replay.empty_like(_dataset(1), capacity=100), _dataset(30, start=1000))  # 1000..1029
    online = _with_sentinel_rows(online)
    for seed in range(20):
        rewards = np.asarray(_balanced(offline, online, jax.random.PRNGKey(seed))['rewards'])
        assert rewards.shape == (10,)
        assert np.all(rewards[:5] < 50) and np.all((rewards[5:] >= 1000) & (rewards[5:] < 1030)), rewards


def test_balanced_sampling_with_a_small_or_empty_online_buffer():
    offline = _dataset(50)
    empty = _with_sentinel_rows(replay.empty_like(_dataset(1), capacity=100))
    rewards = np.asarray(_balanced(offline, empty, jax.random.PRNGKey(0))['rewards'])
    assert np.all((rewards >= 0) & (rewards < 50)), rewards  # all offline until the first append
    one = _with_sentinel_rows(replay.append(empty, _dataset(1, start=1000)))
    rewards = np.asarray(_balanced(offline, one, jax.random.PRNGKey(1))['rewards'])
    np.testing.assert_array_equal(rewards[5:], [1000] * 5)  # fewer online rows than half a batch: repeats
    assert _balanced._cache_size() == 1


def test_balanced_sampling_odd_batch_keeps_its_size():
    offline, online = _dataset(8), _filled(8, capacity=8, start=100)
    rewards = np.asarray(sampling.balanced_batch(offline, online, jax.random.PRNGKey(0), 7)['rewards'])
    assert rewards.shape == (7,) and np.all(rewards[:4] < 8) and np.all(rewards[4:] >= 100)


def test_vmapped_append_equals_one_append_per_member():
    buffers = [_filled(3, capacity=4, start=s) for s in (0, 100)]
    steps = [_dataset(2, start=s) for s in (10, 20)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *buffers)
    together = jax.jit(jax.vmap(replay.append))(stacked, jax.tree.map(lambda *x: jnp.stack(x), *steps))
    for i in range(2):
        alone = replay.append(buffers[i], steps[i])
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[i], b), together, alone)


def test_two_million_transitions_of_cube_double_take_the_bytes_the_docstring_states():
    """cube-double-play: observations of 37 floats, actions of 5 (gymnasium's spaces for the task)."""
    fields = {k: jax.ShapeDtypeStruct((1,) + v.shape[1:], v.dtype) for k, v in _dataset(1, obs_dim=37).items()}
    fields['actions'] = jax.ShapeDtypeStruct((1, 5), jnp.float32)
    shapes = jax.eval_shape(lambda: replay.empty_like(fields, capacity=2_000_000))
    per_row = (37 + 37 + 5 + 1 + 1 + 1) * 4
    assert per_row == 328
    assert replay.device_bytes(shapes) == 656_000_000 + 8  # + size and insert (int32 each)
    assert '656,000,000 bytes (625.6 MiB)' in replay.__doc__
