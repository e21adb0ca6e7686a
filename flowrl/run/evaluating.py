"""Evaluation of a run's members: their episodes on this process's environments at every
--eval_interval (`Evaluation`: flowrl.engine.evaluation, statistics gathered to every process,
scored by the task), and the update's metrics on the validation split (`Validation`:
`validation/<metric>` columns of train.csv)."""

import jax

from flowrl import run_files
from flowrl.engine.evaluation import EvalEnvs, member_keys, run_episodes
from flowrl.engine.training import make_validation_metrics, phase_at


class Evaluation:
    def __init__(self, task, placement, make_env, seeds: list, observation_dtype, policy, diagnostics,
                 workers: int, episodes: int, envs_per_worker: int = 0, log=print, horizon_length: int = 1):
        """`seeds`: every member's seed (padded); `episodes` per member at each evaluation, on
        `envs_per_worker` environments per worker (0: flowrl.engine.env_pool's default); `policy`,
        `diagnostics`: the compiled programs (flowrl.engine.evaluation.make_policy, make_diagnostics);
        `horizon_length`: the actions of each chunk the policy returns, executed open loop."""
        self.task, self.placement, self.make_env, self.seeds = task, placement, make_env, seeds
        self.observation_dtype, self.policy, self.diagnostics, self.workers = (
            observation_dtype, policy, diagnostics, workers)
        self.num_episodes, self.envs_per_worker, self.log = episodes, envs_per_worker, log
        self.horizon_length = horizon_length
        self.envs = None  # made at the first evaluation

    def episodes(self, states, step: int, alive) -> dict:
        """Each process evaluates its own members on its own environments; the per-member
        statistics of every process reach every process (one gather), with the task's score."""
        held = self.placement.local_members
        if self.envs is None:
            self.envs = EvalEnvs(self.make_env, len(held), self.num_episodes, self.workers, self.envs_per_worker,
                                 self.observation_dtype)
            self.log(self.envs.describe())
        stats = run_episodes(self.policy, self.placement.local(states), self.envs, [self.seeds[i] for i in held],
                             step, self.diagnostics, alive[held], self.horizon_length)
        stats = self.placement.gather(stats)
        return dict(score=self.task.episode_scores(stats['episode_return'], stats['success']), **stats)

    def close(self):
        if self.envs is not None:
            self.envs.pool.close()


class Validation:
    def __init__(self, placement, seeds: list, dataset, metrics, phases):
        """`dataset`: the validation split on this process's devices; `metrics`: its compiled program
        (flowrl.engine.training.make_validation_metrics); `seeds`: every member's seed (padded);
        `phases`: the agents' update phases."""
        self.placement, self.seeds, self.dataset, self.metrics, self.phases = placement, seeds, dataset, metrics, phases

    @classmethod
    def of_split(cls, split: dict, placement, seeds: list, chunks) -> 'Validation':
        """The validation part of `split` (host arrays) for the members that `chunks` (the run's
        ChunkRunner: its batches, member execution and phases) trains; each process computes the
        rows of its own members."""
        metrics = make_validation_metrics(chunks.sampler, chunks.execution)
        return cls(placement, seeds, jax.device_put(split, placement.local_replicated), metrics, chunks.phases)

    def row(self, states, step: int, first_agent_step: int) -> dict:
        """The update's metrics on a validation batch at the current states (no step taken), as
        the authors' code logs them; keys from (member seed, step), apart from training's."""
        update = phase_at(self.phases, max(first_agent_step + step - 1, 0))
        held = self.placement.local_members  # each process validates its own members
        keys = member_keys([self.seeds[i] for i in held], step)
        metrics = jax.device_get(self.metrics(update, self.placement.local(states), self.dataset, keys))
        return {f'{run_files.VALIDATION_PREFIX}{k}': v for k, v in self.placement.gather(metrics).items()}
