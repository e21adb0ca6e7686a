"""Tests for flowrl.making.render: visual datasets rendered from state datasets.

Rendering costs ~0.2 s a frame on a CPU, so the whole file renders about 40 frames: the datasets
here have 6-step episodes (flowrl.testing.short_manipulation_episodes) and are built in-process
(workers=1). No test touches the network (FLOWRL_NO_DOWNLOAD=1, connections fail the test).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from flowrl.making import render
from flowrl.making.ogbench import loaded_with_making
from flowrl.making.render import StateRenderer, render_dataset
from flowrl.suites.data import files
from flowrl.suites.data.loading import resolve_dataset_files
from flowrl.suites.data.plans import plan_rendering
from flowrl.suites.ogbench_envs import gym_make
from flowrl.errors import UserError
from flowrl.testing import short_manipulation_episodes

STEPS = 4  # per episode, in the datasets built here
VISUAL = "visual-cube-single-play-v0"

pytestmark = pytest.mark.xdist_group("test_render")


@pytest.fixture(autouse=True)
def offline(no_network):
    """No downloads, and fail loudly if anything tries to open a connection anyway (conftest.py)."""


def _quiet(*args, **kwargs):
    pass


def _resolve(name: str, directory, episodes: int | None = 1, **kwargs):
    """Resolves `name` as a run does: a missing dataset that flowrl makes is made, then resolved."""
    settings = dict(dataset_path=None, dataset_dir=str(directory), dataset_episodes=episodes, generate=True,
                    workers=1, seed=0, log=_quiet)
    settings.update(kwargs)
    return loaded_with_making(lambda: resolve_dataset_files(name, **settings), settings['log'])


def _record_pixel_episode(env_id: str, steps: int, seed: int):
    """Pixel observations of a collection-mode episode with random actions, and the float64 states
    (and button states) the environment reports for each of them."""
    env = gym_make(env_id, terminate_at_goal=False, mode="data_collection", max_episode_steps=100,
                   disable_env_checker=True)
    ob, info = env.reset(seed=seed)
    frames, qpos, qvel, buttons = [ob], [info["qpos"]], [info["qvel"]], [info.get("button_states")]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        ob, _, _, _, info = env.step(rng.uniform(-1, 1, size=env.action_space.shape))
        frames.append(ob)
        qpos.append(info["qpos"])
        qvel.append(info["qvel"])
        buttons.append(info.get("button_states"))
    env.close()
    return np.array(frames), np.array(qpos), np.array(qvel), buttons


@pytest.fixture(scope="module")
def cube_renderer():
    renderer = StateRenderer("visual-cube-single-v0")
    yield renderer
    renderer.close()


# ----------------------------------------------------------------------------- frames


def test_rendered_states_are_the_environment_pixel_observations(cube_renderer):
    observed, qpos, qvel, _ = _record_pixel_episode("visual-cube-single-v0", steps=4, seed=3)
    assert cube_renderer.frames_lag_one_substep  # why a plain set_state + render would differ after a step

    rendered = cube_renderer.render_rows(qpos, qvel)
    for row in range(len(observed)):
        assert np.array_equal(rendered[row], observed[row]), f"row {row}"

    # As stored in a dataset file (float32 states) the frames differ only by rounding: a few
    # anti-aliased pixels by a few levels.
    rounded = cube_renderer.render(qpos[-1].astype(np.float32), qvel[-1].astype(np.float32)).astype(int)
    difference = np.abs(rounded - observed[-1])
    assert difference.max() <= 8 and np.count_nonzero(difference) < 0.03 * difference.size


def test_puzzle_frames_show_the_button_states():
    observed, qpos, qvel, buttons = _record_pixel_episode("visual-puzzle-3x3-v0", steps=2, seed=1)
    renderer = StateRenderer("visual-puzzle-3x3-v0")
    try:
        assert not renderer.frames_lag_one_substep  # puzzle recomputes positions after every step
        rendered = renderer.render_rows(qpos, qvel, np.array(buttons))
        for row in range(len(observed)):
            assert np.array_equal(rendered[row], observed[row]), f"row {row}"
        flipped = renderer.render(qpos[-1], qvel[-1], 1 - np.asarray(buttons[-1]))
        assert not np.array_equal(flipped, observed[-1])
    finally:
        renderer.close()


# ----------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def rendered_dir(tmp_path_factory):
    """visual-cube-single-play-v0-ep1 (6-step episodes), built through the normal name resolution:
    the state dataset is generated, then rendered."""
    directory = tmp_path_factory.mktemp("visual-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(files.NO_DOWNLOAD_ENV_VAR, "1")
        short_manipulation_episodes(patch, STEPS)
        messages = []
        train_file, source = _resolve(VISUAL, directory, log=messages.append)
    assert train_file == directory / f"{VISUAL}-ep1.npz"
    assert source.startswith(f"rendered locally: {train_file} (from cube-single-play-v0-ep1.npz, seed 0, 1 episodes")
    assert any(message.startswith("Generating cube-single-play-v0-ep1 locally") for message in messages)
    assert any(message.startswith(f"Rendering {VISUAL}-ep1 from cube-single-play-v0-ep1") and "frames" in message
               for message in messages)
    return directory


def test_rendered_files_hold_the_state_files_with_frames(rendered_dir, cube_renderer):
    import ogbench.utils

    for suffix in ("", "-val"):
        visual_file = rendered_dir / f"{VISUAL}-ep1{suffix}.npz"
        state_file = rendered_dir / f"cube-single-play-v0-ep1{suffix}.npz"
        with np.load(visual_file) as visual, np.load(state_file) as state:
            assert visual.files == state.files == ["observations", "actions", "terminals", "qpos", "qvel"]
            frames = visual["observations"]
            assert frames.dtype == np.uint8 and frames.shape == (STEPS, 64, 64, 3)
            for key in ("actions", "terminals", "qpos", "qvel"):
                assert visual[key].dtype == state[key].dtype and visual[key].tobytes() == state[key].tobytes(), key
            assert np.array_equal(frames[-1], cube_renderer.render(state["qpos"][-1], state["qvel"][-1]))

        metadata = files.read_metadata(visual_file)
        assert metadata["sha256"] == files.sha256_of_file(visual_file)
        assert metadata["source_state_sha256"] == files.sha256_of_file(state_file)
        assert metadata["renderer"]["MUJOCO_GL"] == "egl" and metadata["plan"]["frames"] == 2 * STEPS
        files.verify_dataset_file(visual_file, files.required_fields(VISUAL), "remedy", frame_shape=(64, 64, 3))

        dataset = ogbench.utils.load_dataset(str(visual_file), ob_dtype=np.uint8, compact_dataset=False)
        assert dataset["observations"].shape == (STEPS - 1, 64, 64, 3)
        assert np.array_equal(dataset["next_observations"][-1], frames[-1])


def test_existing_rendered_dataset_is_verified_not_rerendered(rendered_dir, monkeypatch):
    monkeypatch.setattr(StateRenderer, "render_rows", lambda *args: pytest.fail("rendered again"))
    train_file, source = _resolve(VISUAL, rendered_dir, generate=False)
    assert source.startswith("rendered locally") and train_file.name == f"{VISUAL}-ep1.npz"


class _CountingRenderer(StateRenderer):
    """The real renderer, counting the episodes it renders (class-wide) and raising Ctrl-C at
    episode `interrupt_at` (1-based; 0: never)."""

    episodes = 0
    interrupt_at = 0

    def render_rows(self, qpos, qvel, button_states=None, episode_starts=None):
        type(self).episodes += 1
        if type(self).episodes == type(self).interrupt_at:
            raise KeyboardInterrupt
        return super().render_rows(qpos, qvel, button_states, episode_starts)


def _render_counting(monkeypatch, directory, interrupt_at=0, log=_quiet) -> int:
    """Render the ep1 visual dataset from the state files in `directory`; returns the episodes rendered."""
    _CountingRenderer.episodes, _CountingRenderer.interrupt_at = 0, interrupt_at
    monkeypatch.setattr(render, "StateRenderer", _CountingRenderer)
    render_dataset(plan_rendering(VISUAL, 1), directory / "cube-single-play-v0-ep1.npz", str(directory), workers=1,
                   log=log)
    return _CountingRenderer.episodes


def _npz_digests(directory) -> dict:
    return {path.name: files.sha256_of_file(path) for path in directory.iterdir() if path.suffix == ".npz"}


def test_stopped_render_keeps_the_previous_files_and_the_next_run_continues_it(rendered_dir, tmp_path, monkeypatch):
    """Ctrl-C after the val episode: the old visual files are untouched; the rerun renders only
    the train episode and writes files equal to an uninterrupted render; nothing partial stays."""
    for path in rendered_dir.iterdir():
        shutil.copy(path, tmp_path / path.name)
    before = {path.name: files.sha256_of_file(path) for path in tmp_path.iterdir()}
    short_manipulation_episodes(monkeypatch, STEPS)
    messages = []
    with pytest.raises(KeyboardInterrupt):
        _render_counting(monkeypatch, tmp_path, interrupt_at=2, log=messages.append)
    assert messages[-1].startswith("Stopped with 1 rendered episode(s) kept beside") and "continues" in messages[-1]
    after = {path.name: files.sha256_of_file(path) for path in tmp_path.iterdir() if path.name in before}
    assert after == before
    partial = sorted(path.name for path in tmp_path.iterdir() if path.name not in before)
    assert any(name.endswith("-val.npz.frames-partial.npy") for name in partial), partial
    assert not any(".tmp-" in name for name in partial), partial

    messages.clear()
    assert _render_counting(monkeypatch, tmp_path, log=messages.append) == 1  # the train episode only
    assert any(m.startswith(f"Resuming {VISUAL}-ep1-val.npz: 1 episode(s) already rendered") for m in messages)
    assert _npz_digests(tmp_path) == _npz_digests(rendered_dir)
    assert not any(render.PARTIAL_SUFFIX in path.name for path in tmp_path.iterdir())


def test_partial_render_of_another_source_is_not_reused(rendered_dir, tmp_path, monkeypatch):
    """A kept render whose record names another state file (here: its sha256 edited) starts afresh."""
    for path in rendered_dir.glob("cube-single-play-v0-ep1*"):
        shutil.copy(path, tmp_path / path.name)
    short_manipulation_episodes(monkeypatch, STEPS)
    with pytest.raises(KeyboardInterrupt):
        _render_counting(monkeypatch, tmp_path, interrupt_at=2)
    record = next(tmp_path.glob("*-val.npz.frames-partial.json"))
    record.write_text(record.read_text().replace('"source_state_sha256": "', '"source_state_sha256": "0'))
    assert _render_counting(monkeypatch, tmp_path) == 2
    assert _npz_digests(tmp_path) == _npz_digests(rendered_dir)


def test_a_render_in_progress_is_not_entered_twice(rendered_dir, tmp_path, monkeypatch):
    for path in rendered_dir.glob("cube-single-play-v0-ep1*"):
        shutil.copy(path, tmp_path / path.name)
    short_manipulation_episodes(monkeypatch, STEPS)
    lock = tmp_path / f"{VISUAL}-ep1-val.npz{render.PARTIAL_SUFFIX}.lock"
    with open(lock, "a") as held:
        render.fcntl.flock(held, render.fcntl.LOCK_EX)
        with pytest.raises(UserError, match=f"Another process is rendering .*{VISUAL}-ep1-val.npz"):
            _render_counting(monkeypatch, tmp_path)
    assert _CountingRenderer.episodes == 0


def test_state_file_renamed_as_visual_is_refused(rendered_dir, tmp_path):
    for suffix in (".npz", "-val.npz"):
        shutil.copy(rendered_dir / f"cube-single-play-v0-ep1{suffix}", tmp_path / f"{VISUAL}{suffix}")
    with pytest.raises(UserError, match=r"holds float32 observations of shape \(28,\), not the 64x64x3 uint8 frames"):
        _resolve(VISUAL, tmp_path, episodes=None, generate=False)


# ----------------------------------------------------------------------------- names and CLI


@pytest.mark.parametrize("name, episodes, message", [
    ("visual-antmaze-large-navigate-v0", None, "holds rendered images of a dataset that cannot be generated here"),
    ("visual-humanoidmaze-medium-stitch-v0", 2, "holds rendered images of a dataset that cannot be generated here"),
    ("visual-cube-bogus-play-v0", None, "Unknown OGBench dataset 'visual-cube-bogus-play-v0'"),
])
def test_visual_datasets_that_cannot_be_rendered_are_one_sentence(tmp_path, name, episodes, message):
    with pytest.raises(UserError) as error:
        _resolve(name, tmp_path, episodes=episodes)
    assert message in str(error.value) and str(error.value).count(". ") == 0
    assert list(tmp_path.iterdir()) == []


def test_render_plan_mirrors_the_state_plan():
    plan = plan_rendering(VISUAL)
    assert (plan.file_stem, plan.render_env_id, plan.frames) == (VISUAL, "visual-cube-single-v0", 1_101_100)
    assert plan.uncompressed_bytes() == 1_101_100 * 64 * 64 * 3 and not plan.reduced
    reduced = plan_rendering("visual-puzzle-4x4-noisy-v0", 20)
    assert (reduced.file_stem, reduced.state.file_stem) == ("visual-puzzle-4x4-noisy-v0-ep20", "puzzle-4x4-noisy-v0-ep20")
    assert (reduced.state.train_episodes, reduced.state.val_episodes, reduced.frames) == (20, 2, 22 * 1001)


def test_cli_plan_verify_and_generate_for_visual_names(rendered_dir, capsys):
    from flowrl.suites.data.__main__ import main

    assert main(["plan", VISUAL, "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "1,101,100 frames of 64x64x3 uint8 (13.53 GB once loaded)" in printed and "on 2 worker(s)" in printed

    assert main(["verify", VISUAL, "--episodes", "1", "--dataset_dir", str(rendered_dir)]) == 0
    assert capsys.readouterr().out.startswith("OK: rendered locally")

    assert main(["generate", VISUAL, "--episodes", "1", "--dataset_dir", str(rendered_dir)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
