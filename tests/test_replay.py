"""The on-device replay buffer (flowrl/replay.py): exact contents after appends and wrap-around,
sampling below the size only, balanced sampling's halves, in-place appends, and its memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrl import replay

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


def test_from_dataset_holds_the_dataset_with_room_for_buffer_size():
    buffer = replay.from_dataset(_dataset(5), buffer_size=8)
    assert (buffer.capacity, int(buffer.size), int(buffer.insert)) == (8, 5, 5)
    np.testing.assert_array_equal(buffer.data['rewards'], [0, 1, 2, 3, 4, 0, 0, 0])
    # A dataset larger than --buffer_size keeps all its rows: capacity = max(rows, buffer_size).
    big = replay.from_dataset(_dataset(5), buffer_size=3)
    assert (big.capacity, int(big.size), int(big.insert)) == (5, 5, 0)


def test_append_writes_rows_in_order_and_wraps_around_at_capacity():
    buffer = replay.from_dataset(_dataset(3), buffer_size=5)
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
    return jax.vmap(lambda r: replay.sample(buffer, r, 32))(jax.random.split(rng, 200))


def test_sample_never_draws_at_or_above_the_size():
    # One compiled sampler (the size is traced) for buffers of different sizes.
    for size in (1, 7, 19):
        buffer = _with_sentinel_rows(replay.from_dataset(_dataset(size), buffer_size=20))
        batch = _many_samples(buffer, jax.random.PRNGKey(size))
        for key, values in batch.items():
            assert not np.any(np.asarray(values) == SENTINEL), (size, key)
        drawn = np.asarray(batch['rewards']).ravel()
        assert set(drawn.astype(int)) == set(range(size))  # every filled row is reachable
        np.testing.assert_array_equal(batch['observations'][..., 0], batch['rewards'])  # rows stay whole
    assert _many_samples._cache_size() == 1


def test_sample_after_wrap_around_covers_the_whole_buffer():
    buffer = replay.append(replay.from_dataset(_dataset(4), buffer_size=4), _dataset(1, start=10))
    drawn = set(np.asarray(_many_samples(buffer, jax.random.PRNGKey(0))['rewards']).ravel().astype(int))
    assert drawn == {10, 1, 2, 3}


@jax.jit
def _balanced(offline, online, rng):
    return replay.balanced_sample(offline, online, rng, 10)


def test_balanced_sampling_takes_exactly_half_from_each():
    offline = replay.from_dataset(_dataset(50), buffer_size=50)  # rows 0..49
    online = replay.append(replay.empty_like(_dataset(1), capacity=100), _dataset(30, start=1000))  # 1000..1029
    online = _with_sentinel_rows(online)
    for seed in range(20):
        rewards = np.asarray(_balanced(offline, online, jax.random.PRNGKey(seed))['rewards'])
        assert rewards.shape == (10,)
        assert np.all(rewards[:5] < 50) and np.all((rewards[5:] >= 1000) & (rewards[5:] < 1030)), rewards


def test_balanced_sampling_with_a_small_or_empty_online_buffer():
    offline = replay.from_dataset(_dataset(50), buffer_size=50)
    empty = _with_sentinel_rows(replay.empty_like(_dataset(1), capacity=100))
    rewards = np.asarray(_balanced(offline, empty, jax.random.PRNGKey(0))['rewards'])
    assert np.all((rewards >= 0) & (rewards < 50)), rewards  # all offline until the first append
    one = _with_sentinel_rows(replay.append(empty, _dataset(1, start=1000)))
    rewards = np.asarray(_balanced(offline, one, jax.random.PRNGKey(1))['rewards'])
    np.testing.assert_array_equal(rewards[5:], [1000] * 5)  # fewer online rows than half a batch: repeats
    assert _balanced._cache_size() == 1


def test_balanced_sampling_odd_batch_keeps_its_size():
    offline, online = replay.from_dataset(_dataset(8), 8), replay.from_dataset(_dataset(8, start=100), 8)
    rewards = np.asarray(replay.balanced_sample(offline, online, jax.random.PRNGKey(0), 7)['rewards'])
    assert rewards.shape == (7,) and np.all(rewards[:4] < 8) and np.all(rewards[4:] >= 100)


def test_append_in_place_donates_the_buffer_and_changes_only_the_written_row():
    buffer = replay.from_dataset(_dataset(6), buffer_size=9)
    before = jax.tree.map(np.array, buffer)  # host copies: the donated arrays are gone after the call
    after = replay.append_in_place(buffer, _dataset(1, start=50))
    assert all(x.is_deleted() for x in jax.tree.leaves(buffer.data))  # updated in place, not copied
    for key, rows in after.data.items():
        expected = before.data[key].copy()
        expected[6] = _dataset(1, start=50)[key][0]
        np.testing.assert_array_equal(rows, expected, err_msg=key)
    assert (int(after.size), int(after.insert)) == (7, 7)


def test_vmapped_append_equals_one_append_per_member():
    buffers = [replay.from_dataset(_dataset(3, start=s), buffer_size=4) for s in (0, 100)]
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
