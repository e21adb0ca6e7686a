"""Tests for flowrl.suites.data and flowrl.making's OGBench generation: generation per the OGBench protocol,
integrity, resolution, loading, and the seam between them (a missing dataset reported, then made).

Datasets here are tiny (2-3 episodes) but use the real protocol episode lengths, except the
worker-count determinism test, which uses the test-only `_steps_per_episode` override to stay
fast (its files carry '-test<L>steps' in their name). No test touches the network:
FLOWRL_NO_DOWNLOAD=1 is set and any socket connection attempt fails the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import ogbench
import pytest

from flowrl.making.generate import build_dataset, generate_dataset
from flowrl.making.ogbench import loaded_with_making
from flowrl.suites.data import Datasets, DatasetOrder, MissingDataset, load_singletask_data
from flowrl.suites.data import files
from flowrl.suites.data.plans import plan_generation
from flowrl.suites.data.loading import ACTION_CLIP
from flowrl.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]

# dataset name -> (reduced episode count, single-task env used to check relabelling)
SMALL_DATASETS = {
    "cube-double-play-v0": (2, "cube-double-play-singletask-task1-v0"),
    "scene-play-v0": (2, "scene-play-singletask-task2-v0"),
    "puzzle-3x3-noisy-v0": (2, "puzzle-3x3-noisy-singletask-task1-v0"),
    "pointmaze-medium-navigate-v0": (2, "pointmaze-medium-navigate-singletask-task1-v0"),
    "pointmaze-large-stitch-v0": (3, "pointmaze-large-stitch-singletask-task3-v0"),
}


# One xdist worker generates the module's small datasets once and runs every test that reads them.
pytestmark = pytest.mark.xdist_group('test_data_small_datasets')


@pytest.fixture(autouse=True)
def data_offline(no_network):
    """No downloads, and fail loudly if anything tries to open a connection anyway (conftest.py)."""


def _quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def data_small_dir(tmp_path_factory):
    """One directory holding every small generated dataset (seed 0, in-process)."""
    directory = tmp_path_factory.mktemp("ogbench-data")
    for name, (episodes, _) in SMALL_DATASETS.items():
        generate_dataset(name, dataset_dir=str(directory), episodes=episodes, workers=1, seed=0, log=_quiet)
    return directory


def _train_file(directory: Path, name: str) -> Path:
    episodes, _ = SMALL_DATASETS[name]
    return directory / f"{name}-ep{episodes}.npz"


# ----------------------------------------------------------------------------- protocol


def test_full_size_protocol_without_generating():
    plan = plan_generation("cube-double-play-v0")
    assert (plan.file_stem, plan.train_episodes, plan.val_episodes, plan.steps_per_episode) == (
        "cube-double-play-v0", 1000, 100, 1001)
    assert plan.train_steps == 1_001_000 and plan.train_transitions == 1_000_000
    assert plan.val_transitions == 100_000 and not plan.reduced

    expected = {  # name: (episodes, steps per episode, p_random_action)
        "cube-quadruple-play-v0": (5000, 1001, 0.0),
        "cube-triple-noisy-v0": (3000, 1001, 0.1),
        "scene-noisy-v0": (1000, 1001, 0.1),
        "puzzle-4x6-noisy-v0": (5000, 1001, 0.2),
        "puzzle-4x5-play-v0": (3000, 1001, 0.0),
        "pointmaze-giant-navigate-v0": (500, 2001, 0.0),
        "pointmaze-teleport-stitch-v0": (5000, 201, 0.0),
    }
    for name, (episodes, steps, p_random) in expected.items():
        plan = plan_generation(name)
        assert (plan.train_episodes, plan.val_episodes, plan.steps_per_episode) == (episodes, episodes // 10, steps)
        assert plan.spec.p_random_action == p_random

    reduced = plan_generation("cube-double-play-v0", 4)
    assert reduced.file_stem == "cube-double-play-v0-ep4" and reduced.reduced
    assert (reduced.train_episodes, reduced.val_episodes) == (4, 1)
    assert plan_generation("cube-double-play-v0", 30).val_episodes == 3


def test_collection_env_uses_protocol_episode_length():
    from flowrl.making.generate import EpisodeCollector

    collector = EpisodeCollector(plan_generation("pointmaze-giant-navigate-v0").spec, 2001)
    assert collector.env.spec.max_episode_steps == 2001


# ----------------------------------------------------------------------------- generated files


@pytest.mark.parametrize("name", list(SMALL_DATASETS))
def test_generated_files_load_through_ogbench_unchanged(data_small_dir, name):
    episodes, env_name = SMALL_DATASETS[name]
    train_file = _train_file(data_small_dir, name)
    steps = plan_generation(name).steps_per_episode

    with np.load(train_file) as raw:
        assert raw["observations"].dtype == np.float32 and raw["actions"].dtype == np.float32
        assert raw["terminals"].dtype == bool and raw["qpos"].dtype == np.float32
        assert raw["terminals"].sum() == episodes and raw["terminals"][steps - 1]
        if name.startswith(("scene", "puzzle")):
            assert raw["button_states"].dtype == np.int64

    env, train, val = ogbench.make_env_and_datasets(env_name, dataset_path=str(train_file))
    env.close()
    assert len(train["observations"]) == episodes * (steps - 1)
    assert len(val["observations"]) == 1 * (steps - 1)
    for key in ("observations", "actions", "terminals", "next_observations", "rewards", "masks"):
        assert key in train
    assert np.all(train["rewards"] <= 0) and set(np.unique(train["masks"])) <= {0.0, 1.0}


@pytest.mark.parametrize("name", list(SMALL_DATASETS))
def test_relabelled_rewards_match_replayed_env_success(data_small_dir, name):
    _, env_name = SMALL_DATASETS[name]
    env, train, _ = ogbench.make_env_and_datasets(env_name, dataset_path=str(_train_file(data_small_dir, name)),
                                                  add_info=True)
    world = env.unwrapped
    rewards = train["rewards"]
    if not name.startswith("pointmaze"):
        assert len(np.unique(rewards)) > 1, "the sample should hold partial successes"
    # A few steps of every reward level seen, plus uniformly drawn ones.
    rng = np.random.default_rng(0)
    sample = [rng.choice(np.flatnonzero(rewards == level), 5) for level in np.unique(rewards)]
    sample = np.concatenate(sample + [rng.choice(len(rewards), 20, replace=False)])
    for index in sample:
        qpos, qvel = train["qpos"][index].astype(np.float64), train["qvel"][index].astype(np.float64)
        if "maze" in env_name:
            world.set_state(qpos, qvel)
            env_reward = float(world.compute_success()) - 1.0
        else:
            if "button_states" in train:
                world.set_state(qpos, qvel, train["button_states"][index])
            else:
                world.set_state(qpos, qvel)
            env_reward = world.compute_reward()
        assert train["rewards"][index] == pytest.approx(env_reward), f"step {index}"
    env.close()


def test_oracles_make_progress(data_small_dir):
    """The oracle data is not a random walk: cubes get moved, the point mass reaches goals."""
    with np.load(_train_file(data_small_dir, "cube-double-play-v0")) as raw:
        cube_xy = raw["qpos"][:, 14:16]
        assert np.abs(np.diff(cube_xy, axis=0)).sum() > 0.5
    with np.load(_train_file(data_small_dir, "pointmaze-medium-navigate-v0")) as raw:
        assert np.linalg.norm(raw["qpos"][1000] - raw["qpos"][0]) > 2.0


def test_same_seed_any_worker_count_is_identical_and_seed_matters(tmp_path):
    plan = plan_generation("cube-double-play-v0", 3, _steps_per_episode=150)
    assert plan.file_stem == "cube-double-play-v0-ep3-test150steps"
    paths = {}
    for label, workers, seed in (("one", 1, 0), ("two", 2, 0), ("other-seed", 1, 1)):
        paths[label] = build_dataset(plan, str(tmp_path / label), workers, seed, log=_quiet)

    for train_file in (paths["one"], paths["two"]):
        assert files.read_metadata(train_file)["sha256"] == files.sha256_of_file(train_file)
    assert files.sha256_of_file(paths["one"]) == files.sha256_of_file(paths["two"])
    assert files.sha256_of_file(files.val_path_for(paths["one"])) == files.sha256_of_file(
        files.val_path_for(paths["two"]))
    with np.load(paths["one"]) as one, np.load(paths["two"]) as two, np.load(paths["other-seed"]) as other:
        for key in one.files:
            np.testing.assert_array_equal(one[key], two[key])
        assert not np.array_equal(one["observations"], other["observations"])
        assert not np.array_equal(one["actions"], other["actions"])


# ----------------------------------------------------------------------------- integrity


@pytest.fixture
def data_cube_copy(data_small_dir, tmp_path):
    """A private copy of the small cube dataset (with metadata) that a test may damage."""
    for path in data_small_dir.glob("cube-double-play-v0-ep2*"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _load_cube(directory: Path, **kwargs) -> Datasets:
    return load_singletask_data("cube-double-play-singletask-task1-v0", dataset_dir=str(directory),
                                dataset_episodes=2, generate=False, log=_quiet, **kwargs)


def test_truncated_generated_file_is_refused(data_cube_copy):
    train_file = data_cube_copy / "cube-double-play-v0-ep2.npz"
    train_file.write_bytes(train_file.read_bytes()[:-5000])
    with pytest.raises(UserError, match=r"truncated or corrupt \(sha256 .* size .*\); delete .* run again"):
        _load_cube(data_cube_copy)


def test_wrong_checksum_is_refused(data_cube_copy):
    meta_file = data_cube_copy / "cube-double-play-v0-ep2-val.npz.meta.json"
    metadata = json.loads(meta_file.read_text())
    metadata["sha256"] = "0" * 64
    meta_file.write_text(json.dumps(metadata))
    with pytest.raises(UserError, match=r"-val\.npz is truncated or corrupt \(sha256 .* does not match"):
        _load_cube(data_cube_copy)


def test_truncated_official_file_is_refused(data_cube_copy, tmp_path):
    """Without metadata (an official download) a truncated zip is caught and explained."""
    official = tmp_path / "official" / "cube-double-play-v0.npz"
    official.parent.mkdir()
    shutil.copy(data_cube_copy / "cube-double-play-v0-ep2-val.npz", files.val_path_for(official))
    official.write_bytes((data_cube_copy / "cube-double-play-v0-ep2.npz").read_bytes()[:300_000])
    with pytest.raises(UserError, match=r"truncated or corrupt \(BadZipFile"):
        load_singletask_data("cube-double-play-singletask-task1-v0", dataset_dir=str(official.parent),
                             generate=False, log=_quiet)


def test_corrupted_official_file_fails_crc(data_cube_copy, tmp_path):
    damaged = tmp_path / "damaged.npz"
    data = bytearray((data_cube_copy / "cube-double-play-v0-ep2.npz").read_bytes())
    data[200_000] ^= 0xFF  # inside the compressed observations
    damaged.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"damaged\.npz is truncated or corrupt"):
        load_singletask_data("cube-double-play-singletask-task2-v0", dataset_path=str(damaged), log=_quiet)


def test_missing_validation_file_is_refused(data_cube_copy):
    (data_cube_copy / "cube-double-play-v0-ep2-val.npz").unlink()
    with pytest.raises(UserError, match="Validation file .* is missing"):
        _load_cube(data_cube_copy)


def test_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    from flowrl.making import generate as generate_module

    calls = []
    original_collect = generate_module.EpisodeCollector.collect

    def collect_then_interrupt(self, seed, index):
        calls.append(index)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original_collect(self, seed, index)

    monkeypatch.setattr(generate_module.EpisodeCollector, "collect", collect_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset("pointmaze-medium-stitch-v0", dataset_dir=str(tmp_path), episodes=3, workers=1, log=_quiet)
    assert list(tmp_path.iterdir()) == []


def test_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    """The validation file is written first; a failure on the training file removes it too."""
    original_write = files.write_npz_deterministic
    written = []

    def fail_on_training_file(path, arrays):
        written.append(Path(path).name)
        original_write(path, arrays)
        if len(written) == 2:
            Path(path).write_bytes(Path(path).read_bytes()[:100])
            raise OSError("disk full")

    monkeypatch.setattr(files, "write_npz_deterministic", fail_on_training_file)
    with pytest.raises(OSError, match="disk full"):
        generate_dataset("pointmaze-medium-stitch-v0", dataset_dir=str(tmp_path), episodes=1, workers=1, log=_quiet)
    assert written[0].startswith("pointmaze-medium-stitch-v0-ep1-val.npz.tmp-")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- loading API


def test_load_singletask_data_uses_existing_generated_files(data_cube_copy):
    datasets = _load_cube(data_cube_copy)
    assert datasets.source == f"generated locally: {data_cube_copy}/cube-double-play-v0-ep2.npz (seed 0, 2 episodes, reduced)"
    assert len(datasets.train["observations"]) == 2 * 1000 and len(datasets.val["observations"]) == 1000
    for key, values in datasets.train.items():
        assert values.dtype == np.float32, key
    assert np.abs(datasets.train["actions"]).max() <= ACTION_CLIP

    _, reference, _ = ogbench.make_env_and_datasets(
        "cube-double-play-singletask-task1-v0", dataset_path=str(data_cube_copy / "cube-double-play-v0-ep2.npz"))
    for key in ("observations", "next_observations", "rewards", "masks", "terminals"):
        np.testing.assert_array_equal(datasets.train[key], reference[key])
    np.testing.assert_array_equal(datasets.train["actions"], np.clip(reference["actions"], -ACTION_CLIP, ACTION_CLIP))


def test_a_missing_dataset_is_reported_with_its_order_and_nothing_is_written(tmp_path):
    """The suites only read: a dataset flowrl makes is reported missing, with what to make."""
    messages = []
    with pytest.raises(MissingDataset, match=r"make it with `python -m flowrl.suites.data generate "
                                             rf"pointmaze-medium-stitch-v0 --episodes 2 --dataset_dir {tmp_path}`\.$") as error:
        load_singletask_data("pointmaze-medium-stitch-singletask-task1-v0", dataset_dir=str(tmp_path),
                             dataset_episodes=2, workers=1, seed=3, log=messages.append)
    assert error.value.order == DatasetOrder("pointmaze-medium-stitch-v0", str(tmp_path), 2, 1, 3, True)
    assert messages == [f"Dataset {tmp_path}/pointmaze-medium-stitch-v0-ep2.npz not found (reduced datasets are only "
                        "built locally)."]
    assert list(tmp_path.iterdir()) == []


def test_load_singletask_data_generates_when_missing(tmp_path):
    messages = []
    datasets = loaded_with_making(lambda: load_singletask_data(
        "pointmaze-medium-stitch-singletask-task1-v0", dataset_dir=str(tmp_path), dataset_episodes=2, workers=1,
        seed=3, log=messages.append), messages.append)
    assert any(message.startswith("Generating pointmaze-medium-stitch-v0-ep2 locally") and "about" in message
               for message in messages)
    assert "generated locally" in datasets.source and "seed 3" in datasets.source
    assert len(datasets.train["rewards"]) == 2 * 200
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "pointmaze-medium-stitch-v0-ep2-val.npz", "pointmaze-medium-stitch-v0-ep2-val.npz.meta.json",
        "pointmaze-medium-stitch-v0-ep2.npz", "pointmaze-medium-stitch-v0-ep2.npz.meta.json"]
    # The full-size name is never created by a reduced run.
    assert not (tmp_path / "pointmaze-medium-stitch-v0.npz").exists()


def test_reduced_file_renamed_to_official_name_is_refused(data_cube_copy):
    for suffix in (".npz", ".npz.meta.json", "-val.npz", "-val.npz.meta.json"):
        (data_cube_copy / f"cube-double-play-v0-ep2{suffix}").rename(data_cube_copy / f"cube-double-play-v0{suffix}")
    with pytest.raises(UserError, match="its name promises 1000 episodes"):
        load_singletask_data("cube-double-play-singletask-task2-v0", dataset_dir=str(data_cube_copy),
                             generate=False, log=_quiet)


def test_missing_dataset_without_generation_names_the_command(tmp_path):
    """The suggested command names the dataset directory given (a user copying it must get the same files)."""
    with pytest.raises(UserError, match=rf"make it with `python -m flowrl.suites.data generate cube-double-play-v0 "
                                        rf"--episodes 3 --dataset_dir {tmp_path}`\.$"):
        load_singletask_data("cube-double-play-singletask-task1-v0", dataset_dir=str(tmp_path),
                             dataset_episodes=3, generate=False, log=_quiet)


@pytest.mark.parametrize("env_name", ["antmaze-large-navigate-singletask-task1-v0",
                                      "humanoidmaze-medium-stitch-singletask-v0",
                                      "antsoccer-arena-navigate-singletask-task4-v0"])
def test_expert_policy_datasets_say_which_files_to_place_where(tmp_path, env_name):
    dataset = env_name.split("-singletask")[0] + "-v0"
    with pytest.raises(UserError) as error:
        load_singletask_data(env_name, dataset_dir=str(tmp_path), log=_quiet)
    message = str(error.value)
    assert f"{dataset}.npz and {dataset}-val.npz" in message and str(tmp_path) in message
    assert message.count(". ") == 0  # one sentence
    with pytest.raises(UserError, match="expert policies"):
        load_singletask_data(env_name, dataset_dir=str(tmp_path), dataset_episodes=2, log=_quiet)


@pytest.mark.parametrize("env_name, pattern", [
    ("cube-double-bogus-singletask-task1-v0", "Unknown OGBench dataset"),
    ("cube-double-play-v0", "not an OGBench single-task environment name"),
    ("nothing-here-play-singletask-task1-v0", "Unknown OGBench environment"),
])
def test_bad_names_are_user_errors(tmp_path, env_name, pattern):
    with pytest.raises(UserError, match=pattern):
        load_singletask_data(env_name, dataset_dir=str(tmp_path), log=_quiet)


# ----------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {"FLOWRL_NO_DOWNLOAD": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "flowrl.suites.data", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=120)


def test_cli_plan_reports_full_protocol():
    result = _cli("plan", "cube-double-play-v0", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "1000 train + 100 val" in result.stdout and "1,000,000 train + 100,000 val" in result.stdout


def test_cli_errors(tmp_path):
    unknown = _cli("generate", "cube-bogus-play-v0", "--dataset_dir", str(tmp_path))
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: Unknown OGBench dataset")
    assert unknown.stderr.count("\n") == 1
    assert _cli("generate", "cube-double-play-v0", "--episodes", "0").returncode == 2
    expert = _cli("generate", "antmaze-large-navigate-v0")
    assert expert.returncode == 1 and "antmaze-large-navigate-v0-val.npz" in expert.stderr


def test_cli_generate_refuses_to_overwrite_and_verifies(data_cube_copy):
    result = _cli("generate", "cube-double-play-v0", "--episodes", "2", "--dataset_dir", str(data_cube_copy))
    assert result.returncode == 1 and "already exists; pass --force" in result.stderr
    assert f"verify cube-double-play-v0 --episodes 2 --dataset_dir {data_cube_copy}`" in result.stderr
    verify = _cli("verify", "cube-double-play-v0", "--dataset_episodes", "2", "--dataset_dir", str(data_cube_copy))
    assert verify.returncode == 0 and verify.stdout.startswith("OK: generated locally"), verify.stderr


def test_cli_generate_small_dataset(tmp_path):
    result = _cli("generate", "pointmaze-large-stitch-v0", "--episodes", "2", "--workers", "2", "--seed", "5",
                  "--dataset_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "3/3 episodes (100%)" in result.stdout  # progress: plain lines without a terminal
    metadata = files.read_metadata(tmp_path / "pointmaze-large-stitch-v0-ep2.npz")
    assert (metadata["seed"], metadata["episodes"], metadata["transitions"]) == (5, 2, 400)
    assert metadata["ogbench_version"] == "1.2.2" and metadata["generator_version"] == "1"


def test_unguarded_main_script_fails_fast_instead_of_hanging(tmp_path):
    """Spawned workers re-import the main script; without a __main__ guard we must say so, not hang."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from flowrl.making.generate import generate_dataset\n"
        f"generate_dataset('pointmaze-medium-stitch-v0', dataset_dir={str(tmp_path / 'data')!r}, episodes=2, workers=2)\n"
    )
    env = {"FLOWRL_NO_DOWNLOAD": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0 and "if __name__ == '__main__':" in result.stderr
    assert not (tmp_path / "data" / "pointmaze-medium-stitch-v0-ep2.npz").exists()


@pytest.mark.parametrize("dataset, remedy", [
    ("cube-single-play-v0", "make it with `python -m flowrl.suites.data generate cube-single-play-v0 --dataset_dir {}`."),
    ("cube-single-play-v0 --episodes=5",
     "make it with `python -m flowrl.suites.data generate cube-single-play-v0 --episodes 5 --dataset_dir {}`."),
    ("antmaze-large-navigate-v0",  # collected with expert policies: flowrl cannot make it
     "download https://rail.eecs.berkeley.edu/datasets/ogbench/antmaze-large-navigate-v0.npz and its -val.npz "
     "into {}."),
])
def test_verify_of_a_missing_dataset_says_how_to_get_it(tmp_path, capsys, dataset, remedy):
    """`verify` was asked to check files, not to generate: its message says the file does not
    exist and how to get it (not that "generation is disabled")."""
    from flowrl.suites.data.__main__ import main as data_main  # the command's entry, as users run it

    name, *options = dataset.split()
    assert data_main(["verify", name, *options, f"--dataset_dir={tmp_path}"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    stem = name if not options else f"{name}-ep5"
    assert line == f"error: Dataset {tmp_path}/{stem}.npz does not exist; " + remedy.format(tmp_path)
