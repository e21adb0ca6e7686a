"""One process of a multi-process run for tests/test_hosts.py: joins JAX's multi-controller
runtime as CPU process `process_id` of `num_processes` (coordinator 127.0.0.1:`port`) and
trains the tiny flow BC run of `flowrl.testing.tiny_run_settings` on the fake world, as main.py
would with --coordinator_address, --num_processes and --process_id.

    python tests/hosts_worker.py PROCESS_ID NUM_PROCESSES PORT SAVE_DIR SCENARIO [RUN_DIR]

SCENARIO: train (`run_settings`), three_seeds (the same with 3 seeds), resume (RUN_DIR),
die_after_first_save (process 1 is killed, as by the OOM killer, right after the checkpoint at
update 4), die_before_first_save (process 1 is killed at the first train.csv row, update 2, before
any checkpoint), stop_on_one (process 1 alone receives a SIGTERM after its first chunk), other_data
(process 1 reads other data), shards (`shard_settings`: 8 fake shards in SAVE_DIR/shards streamed with a
window of 2, each process its own 4; every process prints the shards it streamed), shards_stop_on_one
(the same, stopped as stop_on_one). In every scenario process 1 would cut chunks
of one update (its ChunkPacer) where process 0 cuts longer ones.
"""

import dataclasses
import os
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('FLOWRL_NO_DOWNLOAD', '1')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402  (its MonkeyPatch applies the fake world outside a test)

from flowrl.engine import placement  # noqa: E402
from flowrl.errors import UserError  # noqa: E402


def run_settings(save_dir):
    """4 seeds; 2 offline updates, then 6 online environment steps (an update after each); rows
    every 2, evaluations and checkpoints at 4 and 8 (the one at 4 holds running online episodes)."""
    from flowrl.testing import tiny_run_settings

    return tiny_run_settings(save_dir, num_seeds=4, offline_steps=2, online_steps=6, buffer_size=300)


def shard_settings(save_dir):
    """`run_settings` on the fake shards in SAVE_DIR/shards: 8 offline updates with a window of 2
    swapped every 3, then 4 online steps; rows every 2, evaluations and checkpoints at 4, 8, 12."""
    return dataclasses.replace(run_settings(save_dir), dataset_dir=os.path.join(save_dir, 'shards'), shard_window=2,
                               dataset_replace_interval=3, offline_steps=8, online_steps=4, save_interval=0)


def main(process_id: int, num_processes: int, port: int, save_dir: str, scenario: str, run_dir: str | None = None):
    placement.join('auto', f'127.0.0.1:{port}', num_processes, process_id)
    from flowrl.run import runner
    from flowrl.run.record import RunRecord
    from flowrl.testing import use_fake_shards, use_fake_world

    patch = pytest.MonkeyPatch()
    use_fake_world(patch)
    use_fake_shards(patch)  # a run whose --dataset_dir holds fake shards streams them
    if scenario == 'other_data' and process_id == 1:
        patch.setattr('flowrl.run.runner.load_dataset', lambda *args, **kwargs: other_data())
    if process_id == 1:  # this process would time its chunks otherwise: process 0's lengths must apply
        patch.setattr('flowrl.run.progress.ChunkPacer.size', lambda self: 1)
    if scenario == 'die_after_first_save' and process_id == 1:
        save = RunRecord.save

        def save_then_die(self, position, attachments=None):
            save(self, position, attachments)
            os._exit(9)  # no clean-up, as a killed process

        patch.setattr(RunRecord, 'save', save_then_die)
    if scenario == 'die_before_first_save' and process_id == 1:
        patch.setattr('flowrl.run.files.RunFiles.log_rows', lambda self, kind, rows: os._exit(9))
    if scenario in ('stop_on_one', 'shards_stop_on_one') and process_id == 1:
        stop_from_third_look(patch)
    quiet = lambda *_: None  # noqa: E731
    streamed = []
    patch.setattr('flowrl.run.runner.open_stream', lambda *args, **kwargs: note_stream(streamed, *args, **kwargs))
    if scenario == 'resume':
        runner.resume(run_dir, log=quiet)
    elif scenario in ('shards', 'shards_stop_on_one'):
        try:
            runner.Run(shard_settings(save_dir), log=quiet).train()
        finally:
            print('SHARDS', process_id, ' '.join(os.path.basename(path) for path in streamed[0].files), flush=True)
    elif scenario == 'three_seeds':  # 3 members over the processes: padded with inactive ones
        runner.Run(dataclasses.replace(run_settings(save_dir), num_seeds=3), log=quiet).train()
    else:
        runner.Run(run_settings(save_dir), log=quiet).train()
    print('FINISHED', process_id, flush=True)


def note_stream(streamed: list, *args, **kwargs):
    from flowrl.run.stream import open_stream

    streamed.append(open_stream(*args, **kwargs))
    return streamed[-1]


def stop_from_third_look(patch):
    """Process 1 alone receives a SIGTERM: flowrl.stopping reports it from the third look on
    (after the first chunk), as a signal delivered to this process between two chunks would."""
    import signal

    from flowrl import stopping

    looks = iter(range(10**6))
    patch.setattr(stopping, 'requested', lambda: signal.SIGTERM if next(looks) >= 2 else None)


def other_data():
    import numpy as np

    from flowrl.suites import LoadedData
    from flowrl.testing import synthetic_batch

    dataset = {k: np.asarray(v) for k, v in synthetic_batch(rng_seed=7, batch_size=256).items()}
    return LoadedData(dataset, None, 'other synthetic data', {})


if __name__ == '__main__':
    try:
        main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:])
    except placement.ProcessLost as error:  # as main.py: leave without waiting for the lost process
        print(f'error: {error}', file=sys.stderr, flush=True)
        os._exit(1)
    except UserError as error:
        print(f'error: {error}', file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt as stop:  # flowrl.stopping.Stopped: as main.py, its line and 128 + signal
        from flowrl import stopping

        print(stop.message, file=sys.stderr, flush=True)
        sys.exit(stopping.exit_code(stop.signum))
