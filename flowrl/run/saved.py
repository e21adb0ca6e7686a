"""Saved runs read back: a run directory's settings (flags.json), the checkpoint and agent step a
--restore_path run starts from, the agent states of a checkpoint (the real members' rows), and the
checks a resume makes (same data, same configs). Used by the runner (resume, --restore_path) and
by flowrl.run.evaluate_run."""

import os

import jax
import numpy as np

from flowrl import run_files
from flowrl.engine import checkpoints
from flowrl.engine.placement import whole_array_sharding, whole_value
from flowrl.errors import UserError
from flowrl.run.settings import RunSettings


def restore_start(s: RunSettings, log=print) -> tuple:
    """(checkpoint of --restore_path to start from, agent step this run starts at). Without
    --restore_path: (None, 0). With it, the agents' saved step when --restore_schedule=continue
    (their step schedules go on from there), else 0 (they start over with the saved weights)."""
    if s.restore_path is None:
        return None, 0
    settings_from_run_dir(s.restore_path, 'start from')
    directory = os.path.join(s.restore_path, run_files.CHECKPOINT_DIR)
    checkpoint = checkpoints.pick_step(directory, s.restore_epoch, log)
    if s.restore_schedule == 'restart':
        return checkpoint, 0
    return checkpoint, saved_agent_step(s.restore_path, checkpoint)


def saved_agent_step(run_dir: str, checkpoint: int) -> int:
    """The step the agents of `checkpoint` in `run_dir` hold (read alone); 0 for an agent state
    without a step counter. Members at different steps (one diverged) cannot continue as one run."""
    description = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))
    members, rows = len(description['members']), saved_rows(description)
    on_host_device = whole_array_sharding()
    like = dict(states=dict(step=jax.ShapeDtypeStruct((rows,), np.int32, sharding=on_host_device)))
    try:
        steps = whole_value(checkpoints.read_part(os.path.join(run_dir, run_files.CHECKPOINT_DIR), like,
                                                  checkpoint)['states']['step'])[:members]
    except (ValueError, KeyError, TypeError):
        return 0
    if len(set(steps.tolist())) > 1:
        raise UserError(f'The members of checkpoint {checkpoint} of {run_dir} are at different agent steps '
                        f'({", ".join(map(str, steps.tolist()))}; one diverged): pass --restore_schedule=restart to '
                        'start them all over at step 0.')
    return int(steps[0])


def saved_rows(description: dict) -> int:
    """Rows of the member-stacked arrays in the checkpoints of the run `description` (flags.json)
    describes: its members and the inactive ones that padded them (flowrl.engine.placement)."""
    return (description.get('placement') or {}).get('padded_members', len(description['members']))


def read_saved_agents(run_dir: str, like_states, step: int | None = None, log=print):
    """(agent states of the run's real members [members, ...], step) of checkpoint `step` of the
    run in `run_dir`, read as `like_states` (one row per member) is shaped; the rows of inactive
    members its checkpoints hold are dropped."""
    description = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))
    members, rows = len(description['members']), saved_rows(description)
    like = jax.tree.map(lambda x: jax.ShapeDtypeStruct((rows,) + x.shape[1:], x.dtype, sharding=x.sharding),
                        like_states)
    states, step = checkpoints.read_agents(os.path.join(run_dir, run_files.CHECKPOINT_DIR), like, step, log)
    return jax.tree.map(lambda x: whole_value(x)[:members], states), step


def starting_agents(run_dir: str, step: int | None, states, log=print, keep_step: bool = True,
                    num_members: int | None = None, members=None):
    """--restore_path/--restore_epoch: the agent states of checkpoint `step` (default: the newest
    good one) of the run in `run_dir`, in place of the fresh `states` (member-stacked). The saved run
    has as many members as this one, `num_members` (member i starts from its member i), or one (all
    start from it); its networks must have this run's shapes. Keys and buffers are not taken; the
    agents' step is kept (`keep_step`, --restore_schedule=continue: their step schedules go on) or
    set to 0. `members`: the member each row of `states` is (default: row i is member i; a process
    of a multi-process run holds its own members, and inactive ones start as member 0)."""
    saved = settings_from_run_dir(run_dir, 'start from')
    description = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))
    rows = jax.tree.leaves(states)[0].shape[0]
    num_members = rows if num_members is None else num_members
    members = np.arange(rows) if members is None else np.asarray(members)
    saved_members = len(description['members'])
    if saved_members not in (1, num_members):
        raise UserError(f'{run_dir} trained {saved_members} members and this run has {num_members}: give each '
                        'member its own saved member (the same count) or one saved member to start all from.')
    on_host_device = whole_array_sharding()
    like = jax.tree.map(lambda x: jax.ShapeDtypeStruct((saved_members,) + x.shape[1:], x.dtype,
                                                       sharding=on_host_device), states)
    try:
        restored, step = read_saved_agents(run_dir, like, step, log)
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f'The checkpoint of {run_dir} does not hold agents shaped like this run\'s '
                        f'(agent {saved.agent}, {saved.env_name}); use the same agent, network sizes and '
                        f'environment ({type(error).__name__}: {str(error)[:200]}).') from None
    if not keep_step and hasattr(restored, 'step'):
        restored = restored.replace(step=np.zeros_like(restored.step))
    kept = f' at agent step {int(np.max(restored.step)):,}' if hasattr(restored, 'step') else ''
    log(f'Agents start from checkpoint {step:,} of {run_dir}{kept} (--restore_path, '
        f'--restore_schedule={"continue" if keep_step else "restart"}).')
    source = np.zeros_like(members) if saved_members == 1 else np.where(members < num_members, members, 0)
    return jax.tree.map(lambda x: np.asarray(x)[source], restored)


def require_same_data(run_dir: str, record: dict) -> None:
    """A resumed run reads the data it started with (same file hash, where the suite records one)."""
    saved = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE)).get('data') or {}
    if saved.get('sha256') and record.get('sha256') and saved['sha256'] != record['sha256']:
        raise UserError(f'{run_dir} was trained on data with sha256 {saved["sha256"][:12]}… but the data found now '
                        f'({record.get("file") or record.get("dataset_id")}) has {record["sha256"][:12]}…; put the '
                        'original data back to resume.')
    if bool(saved.get('shard_names')) != bool(record.get('shard_names')):
        how = ('a directory of shards', 'one dataset') if saved.get('shard_names') else ('one dataset', 'shards')
        raise UserError(f'{run_dir} was trained on {how[0]} and the data found now is {how[1]}; pass the data it was '
                        'trained on to resume.')
    if saved.get('shard_names') and record.get('shard_names') and saved['shard_names'] != record['shard_names']:
        raise UserError(f'{run_dir} streamed {len(saved["shard_names"])} shards ({saved["shard_names"][0]}, ...) and '
                        f'the --dataset_dir given now holds {len(record["shard_names"])} others '
                        f'({record["shard_names"][0]}, ...); pass the directory of its shards to resume.')


def settings_from_run_dir(run_dir: str, purpose: str = 'resume') -> RunSettings:
    path = os.path.join(run_dir, run_files.FLAGS_FILE)
    if not os.path.isfile(path) and purpose == 'resume' and stopped_before_its_settings(run_dir):
        raise UserError(f'Cannot resume {run_dir!r}: it holds no {run_files.FLAGS_FILE} (its run was stopped before it '
                        'recorded its settings, so nothing was trained); start the run again with its original command, '
                        'without --resume, and delete this empty directory.')
    if not os.path.isfile(path):
        raise UserError(f'Cannot {purpose} {run_dir!r}: it is not a flowrl run directory (no {run_files.FLAGS_FILE}).')
    try:
        return RunSettings(**run_files.read_json(path)['settings'])
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise UserError(f'{path} is unreadable or corrupt ({type(error).__name__}: {error}); it is written once '
                        'when a run starts, so restore it from a copy or start a new run.') from None


def stopped_before_its_settings(run_dir: str) -> bool:
    """Whether `run_dir` is a run directory made by a run stopped before it wrote flags.json
    (its first file): empty, or holding only that write's temporary file."""
    if not os.path.isdir(run_dir):
        return False
    leftover = run_files.temporary_prefix(run_files.FLAGS_FILE)
    return all(name.startswith(leftover) for name in os.listdir(run_dir))


def refuse_changed_configs(run_dir: str, saved: list, configs: list) -> None:
    """A resumed run must train with the configs it started with; a schedule fitted to the run's
    length (QIPO's --agent.phase_scale=auto) would change with --offline_steps."""
    rebuilt = run_files.as_written([config.to_dict() for config in configs])
    changed = sorted({key for old, new in zip(saved, rebuilt) for key in old if old[key] != new.get(key)})
    if changed:
        raise UserError(f'{run_dir} would continue with other values of {", ".join(changed)} than it trained with '
                        '(a schedule fitted to the run\'s length changes with it); leave out --offline_steps.')


def require_same_padding(run_dir: str, placement) -> None:
    """A checkpoint holds one row per member, inactive ones included: it restores onto any
    process count that pads the members to the same number (e.g. 4 members on 1, 2 or 4
    processes with one device each), and is refused on another."""
    description = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))
    saved = description.get('placement') or {}
    rows = saved_rows(description)
    if rows != placement.padded:
        raise UserError(f'{run_dir} was trained with {saved.get("processes", 1)} process(es) and '
                        f'{saved.get("devices", "?")} device(s), which hold its {placement.num_members} '
                        f'members as {rows} rows; {placement.process_count} process(es) with '
                        f'{placement.mesh.devices.size} device(s) would hold {placement.padded}: resume '
                        'it with the process and device counts it started with.')


def example_record(example: dict) -> dict:
    """flags.json 'example': the shape and dtype of one row of each field of the example batch the
    agents were initialised with (the dataset's rows as the agent prepared them), so that a saved
    run's agents can be built again without reading its dataset (flowrl.run.evaluate_run)."""
    return {k: dict(shape=list(np.shape(v)[1:]), dtype=str(np.asarray(v).dtype)) for k, v in example.items()}


def recorded_example(description: dict) -> dict | None:
    """Two zero rows of each field flags.json's 'example' records (`description`: flags.json);
    None for a run written before runs recorded it."""
    record = description.get('example')
    if not record:
        return None
    return {k: np.zeros([2] + list(spec['shape']), spec['dtype']) for k, spec in record.items()}
