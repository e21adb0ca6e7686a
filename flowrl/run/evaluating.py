"""Evaluation of a run's members: their episodes on this process's environments at every
--eval_interval (flowrl.engine.evaluation, statistics gathered to every process, scored by the
task), and the update's metrics on the validation split (`validation/<metric>` columns)."""

import jax

from flowrl import run_files
from flowrl.engine.evaluation import EvalEnvs, member_keys, run_episodes
from flowrl.engine.training import phase_at


class Evaluation:
    def __init__(self, s, task, placement, make_env, seeds: list, observation_dtype, policy, diagnostics,
                 workers: int, validation, validation_metrics, phases, log=print):
        """`seeds`: every member's seed (padded); `policy`, `diagnostics`: the compiled programs
        (flowrl.engine.evaluation.make_policy, make_diagnostics); `validation`: the validation split
        on this process's devices, or None; `validation_metrics`: its compiled program
        (flowrl.engine.training.make_validation_metrics); `phases`: the agents' update phases."""
        self.s, self.task, self.placement, self.make_env, self.seeds = s, task, placement, make_env, seeds
        self.observation_dtype, self.policy, self.diagnostics, self.workers = (
            observation_dtype, policy, diagnostics, workers)
        self.validation, self.validation_metrics, self.phases, self.log = validation, validation_metrics, phases, log
        self.envs = None  # made at the first evaluation

    def due(self, step: int, total_steps: int) -> bool:
        s = self.s
        return bool(s.eval_episodes and s.eval_interval and step > 0
                    and (step % s.eval_interval == 0 or step == total_steps))

    def episodes(self, states, step: int, alive) -> dict:
        """Each process evaluates its own members on its own environments; the per-member
        statistics of every process reach every process (one gather), with the task's score."""
        held = self.placement.local_members
        if self.envs is None:
            self.envs = EvalEnvs(self.make_env, len(held), self.s.eval_episodes, self.workers, self.s.eval_envs,
                                 self.observation_dtype)
            self.log(self.envs.describe())
        stats = run_episodes(self.policy, self.placement.local(states), self.envs, [self.seeds[i] for i in held],
                             step, self.diagnostics, alive[held])
        stats = self.placement.gather(stats)
        return dict(score=self.task.episode_scores(stats['episode_return'], stats['success']), **stats)

    def validation_row(self, states, step: int, first_agent_step: int) -> dict:
        """The update's metrics on a validation batch at the current states (no step taken), as
        the authors' code logs them; keys from (member seed, step), apart from training's."""
        if self.validation is None:
            return {}
        update = phase_at(self.phases, max(first_agent_step + step - 1, 0))
        held = self.placement.local_members  # each process validates its own members
        keys = member_keys([self.seeds[i] for i in held], step)
        metrics = jax.device_get(self.validation_metrics(update, self.placement.local(states), self.validation, keys))
        return {f'{run_files.VALIDATION_PREFIX}{k}': v for k, v in self.placement.gather(metrics).items()}

    def close(self):
        if self.envs is not None:
            self.envs.pool.close()
