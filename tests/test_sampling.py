"""The sampler seam (flowrl/engine/sampling.py): transitions (H = 1, as always) and sequences of H
steps with the Q-chunking code's semantics, from datasets, pixel datasets and replay buffers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrl.engine import replay, sampling
from flowrl.engine.sampling import Sampler, dataset_source, sequences
from flowrl.kit import pixels

ROWS = 20
ENDS = (4, 9, 14, 19)  # episode ends (terminals)
TERMINATED = (9,)  # masks 0 (the task ended there)


def _dataset(rows=ROWS, ends=ENDS, terminated=TERMINATED):
    """Row r: observation (r, r), next observation (r + 1, r + 1), action (r / 100, -r / 100), reward r."""
    index = np.arange(rows, dtype=np.float32)
    terminals, masks = np.zeros(rows, np.float32), np.ones(rows, np.float32)
    terminals[list(ends)], masks[list(terminated)] = 1.0, 0.0
    return dict(observations=np.stack([index, index], 1), next_observations=np.stack([index + 1, index + 1], 1),
                actions=np.stack([index / 100, -index / 100], 1), rewards=index, terminals=terminals, masks=masks)


def test_sequences_match_hand_computed_rows():
    """Starts 3, 8 and 16 with H = 3 (episode ends at rows 4, 9, 14, 19; row 9 terminated), written
    out by hand from the Q-chunking code's rule (utils/datasets.py, sample_sequence)."""
    batch = jax.device_get(sequences(dataset_source(_dataset()), jnp.array([3, 8, 16]), 3))
    np.testing.assert_array_equal(batch['observations'], [[3, 3], [8, 8], [16, 16]])
    np.testing.assert_array_equal(batch['next_observations'], [[6, 6], [11, 11], [19, 19]])  # obs at t + H
    np.testing.assert_array_equal(batch['actions'][:, :, 0], np.array([[3, 4, 5], [8, 9, 10], [16, 17, 18]], np.float32) / np.float32(100))
    np.testing.assert_array_equal(batch['rewards'], [[3, 4, 5], [8, 9, 10], [16, 17, 18]])
    np.testing.assert_array_equal(batch['terminals'], [[0, 1, 1], [0, 1, 1], [0, 0, 0]])  # running max
    np.testing.assert_array_equal(batch['masks'], [[1, 1, 1], [1, 0, 0], [1, 1, 1]])  # running min
    np.testing.assert_array_equal(batch['valid'], [[1, 1, 0], [1, 1, 0], [1, 1, 1]])  # 1 - terminals of the step before


def _authors_sequences(data: dict, starts: np.ndarray, horizon: int) -> dict:
    """The Q-chunking code's sample_sequence for given starts, transcribed with its loop (rewards
    left per step: flowrl's agent discounts them)."""
    rows = starts[:, None] + np.arange(horizon)
    masks = data['masks'][rows].copy()
    terminals = data['terminals'][rows].copy()
    valid = np.ones_like(masks)
    for i in range(1, horizon):
        masks[:, i] = np.minimum(masks[:, i - 1], masks[:, i])
        terminals[:, i] = np.maximum(terminals[:, i - 1], terminals[:, i])
        valid[:, i] = 1.0 - terminals[:, i - 1]
    return dict(observations=data['observations'][starts], actions=data['actions'][rows],
                rewards=data['rewards'][rows], masks=masks, terminals=terminals, valid=valid,
                next_observations=data['next_observations'][rows[:, -1]])


@pytest.mark.parametrize('horizon', [2, 5])
def test_sequences_equal_the_authors_rule_on_random_episodes(horizon):
    rng = np.random.default_rng(horizon)
    ends = np.sort(rng.choice(np.arange(2, 199), 25, replace=False)).tolist() + [199]
    data = _dataset(200, ends, terminated=ends[::3])
    starts = rng.integers(0, 200 - horizon + 1, 64)
    ours = jax.device_get(sequences(dataset_source(data), jnp.asarray(starts), horizon))
    theirs = _authors_sequences(data, starts, horizon)
    assert set(ours) == set(theirs)
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_horizon_one_is_the_transition_batch_it_always_was():
    """H = 1: uniform rows 0..N-1 from the batch key, every field as stored (the bits of every run so far)."""
    data = {k: jnp.asarray(v) for k, v in _dataset().items()}
    rng = jax.random.PRNGKey(7)
    batch = Sampler(64).from_dataset(data, rng)
    idx = jax.random.randint(rng, (64,), 0, ROWS)
    assert set(batch) == set(data)
    for key in data:
        np.testing.assert_array_equal(batch[key], data[key][idx])


def test_sequence_starts_cover_exactly_the_rows_where_a_sequence_fits():
    data = {k: jnp.asarray(v) for k, v in _dataset().items()}
    draw = jax.jit(jax.vmap(lambda r: Sampler(32, 4, with_rows=True).from_dataset(data, r)['rows']))
    starts = np.asarray(draw(jax.random.split(jax.random.PRNGKey(0), 100))).ravel()
    assert set(starts.tolist()) == set(range(ROWS - 4 + 1))


def test_sequences_of_a_pixel_dataset_stack_the_start_and_end_frames():
    """Image observations: the stacked frames at t and t + H (k = 2 frames per observation, one
    episode of 6 transitions: frames 0..6), cropped like transitions when p_aug = 1."""
    frames = np.arange(7, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8)
    data = pixels.frame_dataset(frames, np.arange(6), np.zeros(6, np.int64), 2,
                                actions=np.arange(6, dtype=np.float32)[:, None], rewards=np.ones(6, np.float32),
                                terminals=np.eye(6, dtype=np.float32)[5], masks=np.ones(6, np.float32))
    batch = jax.device_get(sequences(dataset_source(data), jnp.array([0, 2]), 3))
    assert batch['observations'].shape == (2, 4, 4, 2) and batch['actions'].shape == (2, 3, 1)
    np.testing.assert_array_equal(batch['observations'][:, 0, 0], [[0, 0], [1, 2]])  # first frame repeats at t = 0
    np.testing.assert_array_equal(batch['next_observations'][:, 0, 0], [[2, 3], [4, 5]])  # frames of t + 3
    cropped = Sampler(8, 3, p_aug=1.0).from_dataset(data, jax.random.PRNGKey(0))
    assert cropped['observations'].shape == (8, 4, 4, 2) and cropped['next_observations'].shape == (8, 4, 4, 2)


def _buffer_rows(count, start):
    return {k: v[:count] + (start if k in ('observations', 'next_observations', 'rewards') else 0)
            for k, v in _dataset(count, ends=(count - 1,), terminated=()).items()}


def test_sequences_of_the_single_buffer_run_from_the_dataset_into_the_online_rows():
    """The authors' single buffer (dataset rows 0..19, then online rows): a sequence starting at the
    dataset's last rows continues into the first online transitions, and `valid` ends it at the
    dataset's last episode end; no row is ever drawn beyond what was written."""
    dataset = {k: jnp.asarray(v) for k, v in _dataset().items()}
    online = replay.append(replay.empty_like(_dataset(1, ends=(0,), terminated=()), capacity=10), _buffer_rows(3, start=1000))
    source = sampling.single_buffer_source(dataset, online, buffer_size=30)
    batch = jax.device_get(sequences(source, jnp.array([18, 20]), 3))
    np.testing.assert_array_equal(batch['rewards'], [[18, 19, 1000], [1000, 1001, 1002]])
    np.testing.assert_array_equal(batch['valid'], [[1, 1, 0], [1, 1, 1]])
    draw = jax.jit(jax.vmap(lambda r: sampling.single_buffer_batch(dataset, online, r, 16, 30, horizon=3)['rewards']))
    drawn = set(np.asarray(draw(jax.random.split(jax.random.PRNGKey(1), 200))).ravel().astype(int).tolist())
    assert drawn == set(range(ROWS)) | {1000, 1001, 1002}


def test_balanced_sequences_take_half_from_each_and_a_short_buffer_repeats_its_last_row():
    dataset = {k: jnp.asarray(v) for k, v in _dataset().items()}
    online = replay.append(replay.empty_like(_dataset(1, ends=(0,), terminated=()), capacity=10), _buffer_rows(2, start=1000))
    batch = jax.device_get(sampling.balanced_batch(dataset, online, jax.random.PRNGKey(0), 8, horizon=3))
    assert batch['actions'].shape == (8, 3, 2)
    assert np.all(batch['rewards'][:4] < ROWS)
    for row in batch['rewards'][4:]:  # two online rows for sequences of three: the last one repeats
        assert row.tolist() in ([1000, 1001, 1001], [1001, 1001, 1001])
