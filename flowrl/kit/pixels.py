"""Pixel observations in a dataset: frames stored once, stacked by index when a batch is drawn,
and random-crop augmentation inside the compiled training loop.

A dataset of image observations holds, besides its transition fields [N, ...]:
- 'frames' uint8 [F, H, W, C]: every recorded frame once, in file order. An episode's last
  frame is in it too (it is only ever a next observation), so F = N + episodes.
- 'observation_frames', 'next_observation_frames' int32 [N, k]: the rows of `frames` that make
  transition n's observation and next observation, oldest first (k = frames stacked).
A batch's observations are gathered from these on the device: [B, H, W, k * C], the frames
concatenated on the channel axis oldest first, as the authors' code and OGBench's evaluation
frame stack (flowrl.suites.ogbench_envs.FrameStack) present them. Nothing of size N x k x H x W x C is ever
built: 1M transitions of 64x64x3 frames take 12 GB once, not 2k times.
"""

import jax
import jax.numpy as jnp
import numpy as np

FRAMES = 'frames'
FRAME_INDEX_KEYS = ('observation_frames', 'next_observation_frames')
# Random-crop padding of the authors' code (fql/utils/datasets.py, Dataset.augment: padding = 3).
CROP_PADDING = 3
AUGMENT_STREAM = 1  # fold_in tag of the augmentation key: the batch indices keep the sampling key


def has_frames(dataset) -> bool:
    return FRAMES in dataset


def num_transitions(dataset) -> int:
    return dataset['actions'].shape[0]


def stack_indices(rows, episode_first_rows, num_frames: int) -> np.ndarray:
    """[N, k] frame rows of the stacked observations at `rows`: rows - k + 1 .. rows, oldest
    first, none before the episode's first row (an episode's first observations repeat its first
    frame, as a frame-stacking environment does after a reset)."""
    offsets = np.arange(num_frames - 1, -1, -1)
    rows, first = np.asarray(rows)[:, None], np.asarray(episode_first_rows)[:, None]
    return np.maximum(rows - offsets, first).astype(np.int32)


def frame_dataset(frames, observation_rows, episode_first_rows, num_frames: int, **fields) -> dict:
    """A dataset of image observations (see the module docstring) from every frame, the row of
    each transition's observation (its next observation is the following row) and the first
    row of its episode."""
    observation_rows = np.asarray(observation_rows)
    return dict(fields, **{
        FRAMES: frames,
        'observation_frames': stack_indices(observation_rows, episode_first_rows, num_frames),
        'next_observation_frames': stack_indices(observation_rows + 1, episode_first_rows, num_frames),
    })


def stacked_frames(frames, rows):
    """Frames at `rows` [..., k] concatenated on the channel axis: [..., H, W, k * C]."""
    images = frames[rows]  # [..., k, H, W, C]
    images = jnp.moveaxis(images, -4, -2)  # [..., H, W, k, C]
    return images.reshape(images.shape[:-2] + (-1,))


def gather_transitions(dataset: dict, idx) -> dict:
    """Transitions `idx` of `dataset`; image observations are stacked from their frames."""
    if not has_frames(dataset):
        return jax.tree.map(lambda x: x[idx], dataset)
    batch = {k: v[idx] for k, v in dataset.items() if k != FRAMES and k not in FRAME_INDEX_KEYS}
    batch['observations'] = stacked_frames(dataset[FRAMES], dataset['observation_frames'][idx])
    batch['next_observations'] = stacked_frames(dataset[FRAMES], dataset['next_observation_frames'][idx])
    return batch


def crop(image, corner, padding: int):
    """`image` [H, W, C] shifted so that `corner` (row, column) of its edge-padded copy is the
    top left: a shift by corner - padding pixels."""
    padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode='edge')
    return jax.lax.dynamic_slice(padded, (corner[0], corner[1], 0), image.shape)


def random_crops(batch: dict, rng, padding: int = CROP_PADDING) -> dict:
    """Observations and next observations randomly cropped: one corner per transition, drawn
    uniformly in [0, 2 * padding]^2 and shared by its observation and next observation."""
    size = batch['observations'].shape[0]
    corners = jax.random.randint(rng, (size, 2), 0, 2 * padding + 1)
    crop_all = jax.vmap(crop, in_axes=(0, 0, None))
    return dict(batch, observations=crop_all(batch['observations'], corners, padding),
                next_observations=crop_all(batch['next_observations'], corners, padding))


def augment(batch: dict, rng, p_aug: float) -> dict:
    """With probability `p_aug`, one draw per batch (as in the authors' code), `random_crops`."""
    coin_rng, crop_rng = jax.random.split(rng)
    apply = jax.random.uniform(coin_rng) < p_aug
    return jax.lax.cond(apply, lambda b: random_crops(b, crop_rng), lambda b: b, batch)
