"""What a task reads of a run's settings, and the options each suite accepts.

`TaskSettings` is the part of a run's settings that tasks read, typed: every task method that
depends on settings takes one (the run builds it from its own settings:
flowrl.run.settings.task_settings; RunSettings has a field of each name, with the same default).

A suite option is a setting that only some tasks accept (`--sparse` is OGBench's, `--frame_stack`
its pixel tasks'). Each suite module declares the options it owns once, `OPTIONS` (a tuple of
`Option`), and each task says which of them it accepts (`accepted_options`); `refuse_options`
refuses, from those declarations alone, an option given to a task that does not accept it.
"""

import dataclasses

from flowrl.errors import UserError


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    """The run settings a task reads (the flags of the same names: flowrl.run.settings.RunSettings)."""
    dataset_path: str | None = None  # an explicit dataset file
    dataset_dir: str | None = None  # where datasets are found (None: the suite's default directory)
    online_steps: int = 0  # environment steps of online fine-tuning after the offline updates
    sparse: bool = False
    success_timing: str | None = None
    dataset_episodes: int | None = None
    dataset_workers: int | None = None
    frame_stack: int | None = None
    p_aug: float | None = None


@dataclasses.dataclass(frozen=True)
class Option:
    """A suite option: the TaskSettings field `name` (the flag --name), the tasks it applies to
    (the words of its refusal: '--name applies to <applies_to>, not to <task>') and what it does."""
    name: str
    applies_to: str
    meaning: str


def default_value(name: str):
    """A TaskSettings field's default: an option left at it was not given."""
    return next(field.default for field in dataclasses.fields(TaskSettings) if field.name == name)


def refuse_options(task, settings: TaskSettings, declared: tuple) -> None:
    """Refuses, in one sentence, the first option of `declared` (every suite's OPTIONS) that is
    given in `settings` and that `task` does not accept (its `accepted_options`; its
    `option_subject` names it in the sentence)."""
    values = dataclasses.asdict(settings)
    for option in declared:
        if option.name not in task.accepted_options and values[option.name] != default_value(option.name):
            raise UserError(f'--{option.name} applies to {option.applies_to}, not to {task.option_subject}; '
                            'leave it out.')
