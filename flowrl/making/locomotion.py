"""D4RL's locomotion recipe, made here: SAC trained online on a Gymnasium `-v4` locomotion env,
its data written as Minari datasets under flowrl's own ids (never D4RL's names: it is not D4RL's
data). docs/DATA.md ("Locomotion datasets made here") has the recipe, its sources and sizes.

    python -m flowrl.suites.data locomotion halfcheetah [--sac_steps N] [--medium_return_fraction F] ...

D4RL (Fu et al. 2020, section 5 and appendix): `medium` = rollouts of a SAC policy stopped when it
reaches about a third of the expert's return, `medium-replay` = that SAC's replay buffer up to
then, `expert` = rollouts of the fully trained policy, `medium-expert` = medium + expert. Here:
1. SAC (agents/sac.py, loaded by flowrl.registry.agent_loading, with the standard SAC settings,
   `sac_config`) trains through the engine's online path, the program `main.py --online_steps`
   runs (flowrl.engine.online: `MemberEnvs` steps the env, `OnlineProgram` appends to the
   on-device replay buffer, updates and acts; one member, no dataset beside the buffer): uniform
   random actions for `random_steps` (stored, no update), then one update per env step;
2. every `eval_interval` steps the policy's mode is evaluated; the first evaluation at or above
   the medium return (`medium_return`, else `medium_return_fraction` x D4RL's expert reference
   return of the env) writes `flowrl/<env>/medium-replay-v0` (every transition so far) and
   `flowrl/<env>/medium-v0` (`rollout_episodes` episodes of the policy's samples);
3. at `sac_steps`, `expert-v0` (rollouts of the final policy) and `medium-expert-v0`.
Datasets hold terminations and truncations apart (from the engine's masks and episode ends);
reference returns are D4RL's, so normalised scores are D4RL's. SAC's learning curve goes to
`sac_curve.csv` beside the datasets.

Resumable: every `checkpoint_interval` steps (and at the medium point) the engine's checkpoint
(flowrl.engine.checkpoints: orbax, checksums) holds the SAC state, its key, the replay buffer and
the running episode, with the curve and the recipe's progress beside it (`recipe.json`); rerunning
the command continues from it, replaying the running episode as a resumed `main.py --online_steps`
run does, so a resumed run makes the same data as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import time
from pathlib import Path

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from flowrl import run_files
from flowrl.engine import checkpoints
from flowrl.making.online_sac import OnlineTraining
from flowrl.making import minari_writer
from flowrl.errors import UserError

DATASETS = ('medium', 'medium-replay', 'expert', 'medium-expert')
CHECKPOINTS = 'checkpoints'  # the engine's checkpoints (flowrl.engine.checkpoints) in the work dir
RECORD = 'recipe.json'  # beside each checkpoint's arrays: settings and progress
OLD_CHECKPOINT = 'checkpoint.npz'  # of the recipe's own SAC loop (before it trained through the engine)
CURVE_FILE = 'sac_curve.csv'
CURVE_COLUMNS = ('env_step', 'eval_return', 'eval_return_std', 'train_return', 'train_episodes', 'alpha',
                 'wall_s')
ALGORITHM = 'flowrl SAC, D4RL locomotion recipe'
RESUMABLE_CHANGES = ('sac_steps', 'work_dir', 'force')  # settings a rerun may change
FORMAT = 2  # of the checkpoint's record (1: the recipe's own checkpoint.npz)


@dataclasses.dataclass(frozen=True)
class RecipeSettings:
    env: str  # 'halfcheetah', 'hopper', 'walker2d'
    sac_steps: int = 200_000  # environment steps of SAC in all (one update per step after random_steps)
    random_steps: int = 5_000  # first steps with uniform random actions, no update (CleanRL's learning_starts)
    medium_return: float | None = None  # the medium policy's evaluation return; None: the fraction below
    medium_return_fraction: float = 1 / 3  # of D4RL's expert reference return of the env (D4RL: "about 1/3")
    rollout_episodes: int = 100  # episodes of medium and of expert rollouts (D4RL: 1M steps, 1000 episodes)
    eval_interval: int = 5_000
    eval_episodes: int = 5
    checkpoint_interval: int = 10_000
    max_episode_steps: int | None = None  # None: the env's own (1000)
    hidden_dims: tuple = (256, 256)  # actor and critics
    batch_size: int = 256
    seed: int = 0
    work_dir: str | None = None  # checkpoint; default ~/.flowrl/locomotion/<env>
    force: bool = False  # start again, replacing the datasets and the checkpoint

    @property
    def work_path(self) -> Path:
        return Path(self.work_dir or f'~/.flowrl/locomotion/{self.env}').expanduser()

    def recorded(self) -> dict:
        values = dataclasses.asdict(self)
        values['hidden_dims'] = list(self.hidden_dims)
        return {k: v for k, v in values.items() if k not in ('work_dir', 'force')}


def dataset_id(env: str, dataset: str) -> str:
    return f'flowrl/{env}/{dataset}-v0'


def reference_returns(env: str) -> tuple:
    from flowrl.suites.d4rl import REF_SCORES

    return REF_SCORES[env]


def medium_target(settings: RecipeSettings) -> float:
    """The evaluation return at which the policy is D4RL's 'medium' one."""
    if settings.medium_return is not None:
        return float(settings.medium_return)
    return settings.medium_return_fraction * reference_returns(settings.env)[1]


def check_settings(s: RecipeSettings) -> None:
    from flowrl.suites.d4rl_envs import LOCOMOTION_ENV_IDS

    if s.env not in LOCOMOTION_ENV_IDS:
        raise UserError(f'Unknown locomotion env {s.env!r}: pass one of {", ".join(LOCOMOTION_ENV_IDS)}.')
    positive = dict(sac_steps=s.sac_steps, rollout_episodes=s.rollout_episodes, eval_interval=s.eval_interval,
                    eval_episodes=s.eval_episodes, checkpoint_interval=s.checkpoint_interval, batch_size=s.batch_size)
    for name, value in positive.items():
        if value < 1:
            raise UserError(f'--{name} must be at least 1, not {value}.')
    if not 0 <= s.random_steps < s.sac_steps:
        raise UserError(f'--random_steps must be at least 0 and below --sac_steps ({s.sac_steps}), not {s.random_steps}.')
    if s.random_steps < s.batch_size:
        raise UserError(f'--random_steps ({s.random_steps}) must be at least --batch_size ({s.batch_size}): the first '
                        'update samples a batch from the random steps.')
    if s.max_episode_steps is not None and s.max_episode_steps < 1:
        raise UserError(f'--max_episode_steps must be at least 1, not {s.max_episode_steps}.')
    if not s.hidden_dims or min(s.hidden_dims) < 1:
        raise UserError(f'--hidden_dims must be positive layer sizes, not {s.hidden_dims}.')


# -- SAC ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def sac_agent():
    from flowrl.registry.agent_loading import AGENTS_DIR, load_agent

    return load_agent(os.path.join(AGENTS_DIR, 'sac.py'))


def sac_config(agent, s: RecipeSettings):
    """Standard SAC (Haarnoja et al. 2018; rlkit's, which D4RL ran; CleanRL's and SB3's): two
    256-unit layers, no LayerNorm, the entropy term in the TD target, target entropy -|A|."""
    config = agent.get_config()
    config.update(actor_hidden_dims=tuple(s.hidden_dims), value_hidden_dims=tuple(s.hidden_dims), layer_norm=False,
                  backup_entropy=True, target_entropy_multiplier=1.0, batch_size=s.batch_size)
    return config


class SacPolicy:
    """SAC's policy for evaluation and rollouts, compiled once: an exploring action (a sample of
    the policy, as D4RL's data) and the policy's mode. Training is the engine's (online_sac)."""

    def __init__(self, agent):
        def explore(state, key, observation):
            key, act_key = jax.random.split(key)
            return key, agent.explore_actions(state, observation[None], act_key)[0]

        self.explore = jax.jit(explore)
        self.mode = jax.jit(lambda state, observation: agent.sample_actions(state, observation[None], None)[0])


@functools.lru_cache(maxsize=None)
def sac_policy() -> SacPolicy:
    """One SacPolicy per process, so that its compiled functions serve every run in it (tests)."""
    return SacPolicy(sac_agent())


def temperature(state) -> float:
    return float(np.exp(np.asarray(state.params['alpha']['log_alpha'])))


# -- environment -------------------------------------------------------------------------
def make_env(s: RecipeSettings) -> gymnasium.Env:
    from flowrl.suites.d4rl_envs import make_locomotion_env

    return make_locomotion_env(s.env, s.max_episode_steps)


def episode_seed(seed: int, stream: int, index: int) -> int:
    """The reset seed of episode `index` of one stream (2 evaluation, 3 medium rollouts, 4 expert
    rollouts) of the run with `seed`. Training episodes are the engine's (flowrl.engine.online.reset_seed)."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


EVAL, MEDIUM_ROLLOUTS, EXPERT_ROLLOUTS = 2, 3, 4


def random_actions(s: RecipeSettings, action_dim: int) -> np.ndarray:
    """The actions of the first `random_steps` steps [random_steps, action_dim], uniform in [-1, 1]:
    one stream of numpy's generator seeded with the seed, as the recipe drew them before it trained
    through the engine (row t is the action of step t + 1), so nothing of it is checkpointed."""
    return np.random.default_rng(s.seed).uniform(-1.0, 1.0, (s.random_steps, action_dim)).astype(np.float32)


def run_episode(env, act, seed: int) -> dict:
    """One episode with actions `act(observation)`: observations [T + 1], actions, rewards,
    terminations, truncations [T]."""
    observation, _ = env.reset(seed=seed)
    parts = dict(observations=[observation], actions=[], rewards=[], terminations=[], truncations=[])
    done = False
    while not done:
        action = np.asarray(act(observation), np.float32)
        observation, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(('observations', 'actions', 'rewards', 'terminations', 'truncations'),
                              (observation, action, reward, terminated, truncated)):
            parts[key].append(value)
        done = terminated or truncated
    return {k: np.asarray(v) for k, v in parts.items()}


def evaluate(env, program, state, seed: int, step: int, episodes: int) -> np.ndarray:
    """Returns of the policy's mode over `episodes` episodes (seeds from the step)."""
    def act(observation):
        return program.mode(state, jnp.asarray(observation, jnp.float32))

    return np.asarray([run_episode(env, act, episode_seed(seed, EVAL, step * episodes + k))['rewards'].sum()
                       for k in range(episodes)])


def rollouts(s, program, state, stream: int) -> list[dict]:
    """`s.rollout_episodes` episodes of the policy's samples (as D4RL's data: the stochastic
    policy), with a key of their own (the training key is not touched)."""
    key = jax.random.PRNGKey(episode_seed(s.seed, stream, 1 << 30) % (1 << 31))

    def act(observation):
        nonlocal key
        key, action = program.explore(state, key, jnp.asarray(observation, jnp.float32))
        return action

    env = make_env(s)
    try:
        return [run_episode(env, act, episode_seed(s.seed, stream, k)) for k in range(s.rollout_episodes)]
    finally:
        env.close()


# -- the replay buffer as episodes ---------------------------------------------------------
def buffer_episodes(transitions: dict, end: int) -> list[dict]:
    """The engine buffer's transitions [0, end) as episodes: each ends at an episode end
    (`terminals`), and the last at `end` (a running episode is cut there: a truncation);
    terminations are the transitions whose mask is 0, truncations the other episode ends."""
    t = {k: v[:end] for k, v in transitions.items()}
    terminations = t['masks'] == 0
    ends = t['terminals'] > 0
    ends[-1] = True
    truncations = ends & ~terminations
    last = np.nonzero(ends)[0]
    first = np.r_[0, last[:-1] + 1]
    return [dict(observations=np.concatenate([t['observations'][i:j + 1], t['next_observations'][j:j + 1]]),
                 actions=t['actions'][i:j + 1], rewards=t['rewards'][i:j + 1],
                 terminations=terminations[i:j + 1], truncations=truncations[i:j + 1])
            for i, j in zip(first, last)]


# -- the run's state and its checkpoint --------------------------------------------------
@dataclasses.dataclass
class Progress:
    """What the recipe has done: `medium` and `expert` (None until made) record the policy."""
    step: int = 0
    curve: list = dataclasses.field(default_factory=list)
    medium: dict | None = None
    expert: dict | None = None
    wall_s: float = 0.0  # SAC's wall time so far, over all sessions
    train_returns: list = dataclasses.field(default_factory=list)  # of episodes ended since the last evaluation
    running_return: float = 0.0  # of the training episode under way


def recipe_record(settings: RecipeSettings, progress: Progress) -> bytes:
    """What a checkpoint holds beside the engine's arrays: the settings it was made with and the progress."""
    return json.dumps(dict(format=FORMAT, settings=settings.recorded(), progress=dataclasses.asdict(progress))).encode()


def checkpoint_dir(settings: RecipeSettings) -> Path:
    return settings.work_path / CHECKPOINTS


def read_record(settings: RecipeSettings, log=print) -> tuple[int, dict]:
    """(step, recipe record) of the newest good checkpoint, refused in one sentence when it was made
    with other settings (only `RESUMABLE_CHANGES` may differ)."""
    directory = checkpoint_dir(settings)
    step = checkpoints.pick_step(directory, log=log)
    try:
        record = json.loads(checkpoints.attachment(directory, step, RECORD))
    except (TypeError, ValueError) as error:
        raise UserError(f'The checkpoint {step} in {directory} has no readable {RECORD} ({error}); pass --force to '
                        'start again.') from None
    recorded, wanted = record['settings'], settings.recorded()
    changed = sorted(k for k in wanted if k not in RESUMABLE_CHANGES and recorded.get(k) != wanted[k])
    if changed:
        raise UserError(f'The checkpoint {directory} was made with other settings '
                        f'({", ".join(f"--{k}={recorded.get(k)}" for k in changed)}): '
                        'rerun with those to continue, or pass --force to start again.')
    return step, record


def read_progress(settings: RecipeSettings) -> Progress:
    """The recipe's progress in its newest checkpoint."""
    return Progress(**read_record(settings, log=lambda line: None)[1]['progress'])


# -- datasets --------------------------------------------------------------------------------
def policy_record(step: int, eval_returns: np.ndarray, episodes: list[dict]) -> dict:
    returns = np.asarray([e['rewards'].sum() for e in episodes])
    return dict(env_step=int(step), eval_return_mean=float(eval_returns.mean()), eval_return_std=float(eval_returns.std()),
                eval_episodes=len(eval_returns), rollout_return_mean=float(returns.mean()),
                rollout_return_std=float(returns.std()), rollout_episodes=len(episodes))


def data_record(settings: RecipeSettings, dataset: str, episodes: list[dict], policies: dict, sac: dict) -> dict:
    """What a dataset's description and sidecar hold: how it was made and by which policies."""
    returns = np.asarray([e['rewards'].sum() for e in episodes])
    low, high = reference_returns(settings.env)
    return dict(
        made_by='python -m flowrl.suites.data locomotion (D4RL locomotion recipe, Fu et al. 2020; not D4RL data)',
        dataset=dataset, env_id=make_env_id(settings), max_episode_steps=settings.max_episode_steps,
        episodes=len(episodes), transitions=int(sum(len(e['rewards']) for e in episodes)),
        average_return=float(returns.mean()),
        average_normalized_score=float(100 * (returns.mean() - low) / (high - low)),
        reference_returns=[low, high], medium_target_return=medium_target(settings), policies=policies,
        sac=sac, settings=settings.recorded())


def make_env_id(settings: RecipeSettings) -> str:
    from flowrl.suites.d4rl_envs import LOCOMOTION_ENV_IDS

    return LOCOMOTION_ENV_IDS[settings.env]


def write_dataset(settings, dataset: str, episodes: list[dict], env_spec, policies: dict, sac: dict, log) -> dict:
    record = data_record(settings, dataset, episodes, policies, sac)
    ident = dataset_id(settings.env, dataset)
    minari_writer.write(ident, episodes, env_spec, reference_returns(settings.env), ALGORITHM, record)
    log(f'Wrote {ident}: {record["episodes"]} episodes, {record["transitions"]} transitions, average return '
        f'{record["average_return"]:.1f} (normalised {record["average_normalized_score"]:.1f}).')
    return record


def rollouts_path(settings: RecipeSettings) -> Path:
    return settings.work_path / 'medium_rollouts.npz'


def save_rollouts(path: Path, episodes: list[dict]) -> None:
    """The medium rollouts, kept for medium-expert (written before the checkpoint that needs them)."""
    arrays = {f'{k}/{i}': v for i, e in enumerate(episodes) for k, v in e.items()}
    temporary = path.with_name('.' + path.name + '.tmp')
    with open(temporary, 'wb') as handle:
        np.savez(handle, **arrays)
    os.replace(temporary, path)


def load_rollouts(path: Path) -> list[dict]:
    with np.load(path) as data:
        count = len([k for k in data.files if k.startswith('actions/')])
        return [{k: data[f'{k}/{i}'] for k in ('observations', 'actions', 'rewards', 'terminations', 'truncations')}
                for i in range(count)]


def write_curve(settings: RecipeSettings, curve: list) -> Path:
    """SAC's learning curve, beside the datasets (`<minari root>/flowrl/<env>/sac_curve.csv`)."""
    path = minari_writer.minari_root() / 'flowrl' / settings.env / CURVE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [','.join(CURVE_COLUMNS)] + [','.join(_csv_value(row[c]) for c in CURVE_COLUMNS) for row in curve]
    run_files.write_atomic(str(path), '\n'.join(lines) + '\n')
    return path


def _csv_value(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ''
    return f'{value:.6g}' if isinstance(value, float) else str(value)


# -- the recipe --------------------------------------------------------------------------------
def prepare(settings: RecipeSettings, log) -> bool:
    """Refuses to overwrite datasets this run did not make; with --force removes the checkpoints
    and the datasets. True when a checkpoint is there to continue from."""
    if settings.force:
        shutil.rmtree(settings.work_path, ignore_errors=True)
        for dataset in DATASETS:
            minari_writer.remove(dataset_id(settings.env, dataset))
        return False
    old = settings.work_path / OLD_CHECKPOINT
    if old.is_file():
        raise UserError(f'{old} was written by an older flowrl, whose recipe trained SAC with a loop of its own; this '
                        'one trains through the engine and cannot continue it: pass --force to start again.')
    if checkpoints.latest_step(checkpoint_dir(settings)) is not None:
        return True
    present = [dataset_id(settings.env, d) for d in DATASETS if minari_writer.exists(dataset_id(settings.env, d))]
    if present:
        raise UserError(f'{", ".join(present)} already exist in {minari_writer.minari_root()} and '
                        f'{checkpoint_dir(settings)} holds no checkpoint to continue from: pass --force to make them '
                        'again.')
    return False


def make_datasets(settings: RecipeSettings, log=print, on_step=None) -> Progress:
    """Runs the recipe (or continues it from the checkpoint) and writes the four datasets.
    `on_step(step)` is called after every environment step (tests interrupt the run with it)."""
    check_settings(settings)
    resume = prepare(settings, log)
    settings.work_path.mkdir(parents=True, exist_ok=True)
    progress, step = Progress(), None
    if resume:
        step, record = read_record(settings, log)
        progress = Progress(**record['progress'])
        if progress.step > settings.sac_steps:
            raise UserError(f'The checkpoint in {checkpoint_dir(settings)} is at step {progress.step}, past '
                            f'--sac_steps={settings.sac_steps}.')
        if progress.expert is not None and progress.step == settings.sac_steps:
            log(f'The datasets of this run are made already (step {progress.step}); --force makes them again.')
            return progress
    agent = sac_agent()
    config = sac_config(agent, settings)
    training = OnlineTraining(agent, config, functools.partial(make_env, settings), settings.seed, settings.sac_steps,
                              settings.batch_size)
    eval_env = make_env(settings)
    try:
        action_dim = eval_env.action_space.shape[0]
        if resume:
            training.restore(checkpoint_dir(settings), step, record['settings']['sac_steps'])
            log(f'Continuing from the checkpoint of step {progress.step} in {checkpoint_dir(settings)}.')
        else:
            training.start(0, random_actions(settings, action_dim)[0])
        sac = dict(config={k: list(v) if isinstance(v, tuple) else v for k, v in config.to_dict().items()},
                   target_entropy=-float(action_dim), update_every_env_step=True)
        target = medium_target(settings)
        log(f'SAC on {make_env_id(settings)} for {settings.sac_steps} steps; the medium policy is the first whose '
            f'evaluation return reaches {target:.1f}.')
        _train(settings, training, eval_env, progress, sac, target, log, on_step)
    finally:
        training.close()
        eval_env.close()
    return progress


def _medium_not_reached(s, progress, target) -> UserError:
    best = max(row['eval_return'] for row in progress.curve)
    return UserError(f'The policy never reached the medium return {target:.1f} in {s.sac_steps} steps (best evaluation '
                     f'{best:.1f}), so no dataset was written: rerun with a larger --sac_steps to continue, or start '
                     'again (--force) with a lower --medium_return.')


def _train(s, training, eval_env, progress, sac, target, log, on_step):
    """SAC's environment steps up to `sac_steps`, with the evaluations, datasets and checkpoints on the way."""
    if progress.step == s.sac_steps and progress.medium is None:  # a rerun of a run that ended so
        raise _medium_not_reached(s, progress, target)
    started = time.perf_counter() - progress.wall_s
    randoms = random_actions(s, eval_env.action_space.shape[0])
    policy = sac_policy()
    while progress.step < s.sac_steps:
        step = progress.step + 1
        learn = step >= s.random_steps
        transition = training.step(step, learn, None if learn else randoms[step])
        progress.step = step
        _count_return(progress, transition)
        if on_step is not None:
            on_step(step)
        checkpoint = step % s.checkpoint_interval == 0 or step == s.sac_steps
        if step % s.eval_interval == 0 or step == s.sac_steps:
            eval_returns = evaluate(eval_env, policy, training.state, s.seed, step, s.eval_episodes)
            progress.wall_s = time.perf_counter() - started
            _log_curve(s, progress, eval_returns, training.state, log)
            if progress.medium is None and eval_returns.mean() >= target:
                _write_medium(s, eval_env.spec, policy, training, eval_returns, progress, sac, log)
                checkpoint = True
        if step == s.sac_steps:
            if progress.medium is None:
                _save(s, training, progress)
                raise _medium_not_reached(s, progress, target)
            _write_expert(s, eval_env.spec, policy, training.state, eval_returns, progress, sac, log)
        if checkpoint:
            progress.wall_s = time.perf_counter() - started
            _save(s, training, progress)


def _count_return(progress: Progress, transition: dict) -> None:
    """Adds the step's reward to the running episode's return; an ended episode's goes to the curve's list."""
    progress.running_return += float(transition['rewards'][0])
    if transition['terminals'][0] > 0:
        progress.train_returns.append(progress.running_return)
        progress.running_return = 0.0


def _save(s, training, progress):
    training.save(checkpoint_dir(s), progress.step, {RECORD: recipe_record(s, progress)})


def _log_curve(s, progress, eval_returns, state, log):
    returns = progress.train_returns
    row = dict(env_step=progress.step, eval_return=float(eval_returns.mean()), eval_return_std=float(eval_returns.std()),
               train_return=float(np.mean(returns)) if returns else None, train_episodes=len(returns),
               alpha=temperature(state), wall_s=round(progress.wall_s, 1))
    progress.curve.append(row)
    write_curve(s, progress.curve)
    train = f'{row["train_return"]:.1f}' if returns else 'n/a'
    log(f'step {progress.step:>8}  eval return {row["eval_return"]:9.1f} ± {row["eval_return_std"]:.1f}  '
        f'train return {train}  alpha {row["alpha"]:.3g}  {progress.wall_s:.0f} s')
    progress.train_returns = []


def _write_medium(s, env_spec, policy, training, eval_returns, progress, sac, log):
    """D4RL's medium point: the buffer so far (medium-replay) and rollouts of this policy (medium)."""
    step = progress.step
    episodes = rollouts(s, policy, training.state, MEDIUM_ROLLOUTS)
    medium = policy_record(step, eval_returns, episodes)
    log(f'Medium policy at step {step}: evaluation return {medium["eval_return_mean"]:.1f}, rollouts '
        f'{medium["rollout_return_mean"]:.1f}.')
    save_rollouts(rollouts_path(s), episodes)
    write_dataset(s, 'medium-replay', buffer_episodes(training.filled(), step), env_spec, dict(medium=medium), sac, log)
    write_dataset(s, 'medium', episodes, env_spec, dict(medium=medium), sac, log)
    progress.medium = medium


def _write_expert(s, env_spec, policy, state, eval_returns, progress, sac, log):
    episodes = rollouts(s, policy, state, EXPERT_ROLLOUTS)
    expert = policy_record(progress.step, eval_returns, episodes)
    log(f'Expert (final) policy at step {progress.step}: evaluation return {expert["eval_return_mean"]:.1f}, rollouts '
        f'{expert["rollout_return_mean"]:.1f}.')
    write_dataset(s, 'expert', episodes, env_spec, dict(expert=expert), sac, log)
    medium_episodes = load_rollouts(rollouts_path(s))
    write_dataset(s, 'medium-expert', medium_episodes + episodes, env_spec, dict(medium=progress.medium, expert=expert),
                  sac, log)
    progress.expert = expert
