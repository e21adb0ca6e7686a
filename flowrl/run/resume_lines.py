"""The lines that end a run early, each with the command that continues it: a stop at a safe
point, a stop elsewhere (an evaluation, a second Ctrl-C), a full disk. flowrl.stopping turns the
signals into requests and `Stopped`; the run words the line (docs/DESIGN.md, "Reliability")."""

import os
import shlex

from flowrl.stopping import Stopped, signal_name

# The training command as the lines spell it; flowrl.main.script sets how it was started.
TRAIN_COMMAND = 'python main.py'


def train_command(launcher: str, module_file: str) -> str:
    """The training command as it was started (`launcher`: sys.argv[0]; `module_file`: flowrl/main.py)."""
    if os.path.basename(launcher) == 'flowrl-train':
        return 'flowrl-train'
    if os.path.isfile(launcher) and os.path.samefile(launcher, module_file):
        return 'python -m flowrl.main'
    return 'python main.py'


def resume_command(run_dir: str) -> str:
    return f'{TRAIN_COMMAND} --resume={shlex.quote(str(run_dir))}'


def stopped_line(signum: int, step: int, total_steps: int, checkpoint_dir: str, run_dir: str) -> str:
    """The line of a run stopped at a safe point, with a checkpoint at `step`."""
    return (f'Stopped by {signal_name(signum)} at update {step:,} of {total_steps:,}, with a checkpoint in '
            f'{checkpoint_dir}; continue with: {resume_command(run_dir)}')


def abandoned_line(stop: Stopped, step: int, latest_checkpoint: int | None, run_dir: str) -> str:
    """The line of a run stopped elsewhere: in an evaluation (abandoned at a safe point, redone
    on resume), or at once by a second Ctrl-C."""
    name, resume = signal_name(stop.signum), resume_command(run_dir)
    if not stop.at_once:
        return (f'Stopped by {name} during the evaluation at update {step:,}; the checkpoint saved before it is kept '
                f'and the resumed run evaluates again; continue with: {resume}')
    if latest_checkpoint is None:
        return f'Stopped at once by {name} at update {step:,}, before any checkpoint was saved; start it over with: {resume}'
    return f'Stopped at once by {name} at update {step:,}; continue from update {latest_checkpoint:,} with: {resume}'


def no_space_line(what: str, step: int, newest_good_checkpoint: int | None, run_dir: str) -> str:
    """The sentence that ends a run whose write of `what` failed for lack of space (flowrl.disk.NoSpace)."""
    then = (f'no checkpoint was saved yet; free some space, then start it over with: {resume_command(run_dir)}'
            if newest_good_checkpoint is None
            else f'the newest good checkpoint is update {newest_good_checkpoint:,}; free some space, then continue '
                 f'with: {resume_command(run_dir)}')
    return (f'No space left on the device for {what} at update {step:,}: the half-written file was removed and '
            f'nothing else was changed; {then}.')
