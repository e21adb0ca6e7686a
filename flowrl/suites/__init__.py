"""Benchmark suites: the one seam between a run and the benchmark it trains on.

Each suite is a module (`ogbench`, `d4rl`) with `parse(name) -> Task | None` (None: not one of
its names) and `known_names() -> tuple[str, ...]` (for did-you-mean). A `Task` owns everything
the rest of flowrl needs to know about an environment name:

- names: `name` (canonical, recorded in flags.json), `short_name` (file-safe: run directories,
  report groups and file names), `display_name` (what a user calls it: report tables and plot
  titles), `family` and `task_number` (published scores), `canonical()` (one name per task);
- presets: `preset_tables(online)` (the tables of configs/<agent>.py it reads, in order, e.g.
  ('PRESETS', 'ONLINE_PRESETS') or ('D4RL_PRESETS',)) and `preset_keys` (a family key, then a
  task key that refines it), so that two suites' names never share a table;
- settings: every method that depends on the run's settings takes a `TaskSettings` (the part
  of them tasks read, typed: flowrl.suites.options); `accepted_options`, the suite options (each
  suite module's `OPTIONS`: `--sparse`, `--success_timing`, pixel options...) it accepts, and
  `option_subject`, how their refusal names it; `check_settings(settings, configs)` refuses
  what else does not apply to it (an image encoder without pixels). `check_settings(task,
  settings, configs)` here runs both: options refused from the suites' declarations, then the task's own;
- data: `load(settings, log) -> LoadedData` (training split, validation split or None, one
  source line, a record of what was read: file hash, data source; the environment's observation
  and action sizes where the suite knows them), with rewards as the source stores them;
  `shards(settings, log) -> Shards | None`: the dataset as shards to stream (OGBench's 100M/1B
  layout, flowrl.suites.data.shards), or None where it is one file (always, for D4RL);
- rewards: `reward_function(settings)` maps stored or environment rewards to the run's. A suite
  never applies it: the run does, once, to the dataset (`with_run_rewards`, which refuses data
  whose rewards are already the run's) and to each online transition (flowrl.engine.online);
- evaluation: `env_factory(settings)` (a picklable `() -> gymnasium.Env`), `metric` (what the
  score measures: a key of `METRICS`, which says how to label and bound it) and
  `episode_scores(returns, successes)` (one score per episode, a fraction: 100 x it is the
  percentage or the normalised score the papers print);
- `description(settings)`: what the run records about the benchmark (flags.json, results.json).

No code outside this package asks which suite a task belongs to.

Layer: the suites (with their data, `flowrl.suites.data`, and OGBench's names, `ogbench_envs`) may
import the base modules and flowrl.kit (the pixel batch format); never the engine, making, results
or run. They read and describe data; making it is flowrl.making's (a missing dataset that flowrl
makes is reported as `flowrl.suites.data.MissingDataset`, and the run's loading has it made).
"""

from __future__ import annotations

import difflib

from flowrl.errors import UserError
from flowrl.suites.options import Option, TaskSettings, refuse_options  # noqa: F401 (the seam's names)
from flowrl.suites.transitions import (METRICS, TRANSITION_FIELDS, LoadedData, Metric,  # noqa: F401 (the seam's names)
                                       as_float32, check_transitions, with_run_rewards)


def _suites():
    from flowrl.suites import d4rl, ogbench

    return (ogbench, d4rl)


def resolve(name: str):
    """The task `name` stands for in the first suite that knows it; a UserError with the nearest
    names of every suite otherwise (a suite's own error for a name it recognises but refuses)."""
    for suite in _suites():
        task = suite.parse(name)
        if task is not None:
            return task
    known = [n for suite in _suites() for n in suite.known_names()]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f'; did you mean {" or ".join(close)}?' if close else (
        ': pass an OGBench singletask name (cube-double-play, cube-double-play-task3), a D4RL name '
        '(antmaze-large-play-v2, pen-human-v1, halfcheetah-medium-v2, kitchen-mixed-v0) or a Minari dataset id '
        '(D4RL/pen/human-v2).')
    raise UserError(f'Unknown environment {name!r}{hint}')


def declared_options() -> tuple:
    """Every suite's options (its module's OPTIONS), in the order of the suites."""
    return tuple(option for suite in _suites() for option in suite.OPTIONS)


def check_settings(task, settings: TaskSettings, configs) -> None:
    """Refuses what does not apply to `task`: an option of a suite that the task does not accept
    (from the suites' declarations, one sentence for all), then what the task itself refuses."""
    refuse_options(task, settings, declared_options())
    task.check_settings(settings, configs)
