"""How far a run's settings and its run directory travel through the code: the modules that
receive them, and how often the calls that pass them on cross between flowrl/run and flowrl/engine.

    python benchmarks/data_flow.py            # this checkout's flowrl
    PYTHONPATH=OTHER_CHECKOUT python benchmarks/data_flow.py   # another one, e.g. an older commit

Two tiny runs on the test fakes (flowrl.testing.use_fake_world, no data, no download):
- settings: `Run(settings).train()` of 4 offline updates then 4 online steps; a call counts when
  one of its arguments is a RunSettings or holds one as an attribute (`self.s`);
- run directory: `resume(run_dir, {'offline_steps': 12})` of an 8-update offline run; a call
  counts when one of its arguments is a path in the run directory (the directory, its
  checkpoints, its files) or holds one as an attribute.
A call is a Python function of flowrl (agents and configs included) entered while the run works
(sys.setprofile). Crossings: consecutive counted calls whose layers are run then engine, or engine
then run. docs/DESIGN.md ("Data flow of a run") quotes the table this prints.
"""

import collections
import os
import sys
import tempfile

import pytest

from flowrl.run import runner
from flowrl.run.settings import RunSettings
from flowrl.testing import tiny_run_settings, use_fake_world

QUIET = lambda *_: None  # noqa: E731


def module_of(frame) -> str | None:
    name = frame.f_globals.get('__name__', '')
    return name if name.split('.')[0] in ('flowrl', 'main') else None


def layer_of(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 2 else 'base'


def arguments(frame) -> list:
    code = frame.f_code
    count = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & 4) + bool(code.co_flags & 8)
    values = [frame.f_locals.get(name) for name in code.co_varnames[:count]]
    expanded = []
    for value in values:
        expanded += list(value) if isinstance(value, tuple) else list(value.values()) if isinstance(value, dict) \
            else [value]
    return expanded


def holds(value, carries) -> bool:
    """Whether `value` keeps what is followed as one of its attributes (a method of an object that
    holds the settings or a path in the run directory reads them through `self`)."""
    attributes = getattr(value, '__dict__', None)
    return isinstance(attributes, dict) and any(carries(v) for v in list(attributes.values()))


def trace(carries, work) -> list:
    """The modules of the calls whose arguments `carries` accepts, in call order, while `work()` runs."""
    calls = []

    def profile(frame, event, _):
        if event == 'call':
            module = module_of(frame)
            if module is not None and any(carries(value) or holds(value, carries) for value in arguments(frame)):
                calls.append(module)

    sys.setprofile(profile)
    try:
        work()
    finally:
        sys.setprofile(None)
    return calls


def summary(calls: list) -> dict:
    layers = [layer_of(m) for m in calls]
    crossings = collections.Counter(zip(layers, layers[1:]))
    return dict(calls=len(calls), modules=len(set(calls)), run_to_engine=crossings[('run', 'engine')],
                engine_to_run=crossings[('engine', 'run')], listed=sorted(set(calls)))


def main():
    patch = pytest.MonkeyPatch()
    use_fake_world(patch)
    with tempfile.TemporaryDirectory() as tmp:
        settings = tiny_run_settings(os.path.join(tmp, 'online'), offline_steps=4, online_steps=4)
        by_settings = trace(lambda v: isinstance(v, RunSettings), lambda: runner.Run(settings, log=QUIET).train())
        offline = runner.Run(tiny_run_settings(os.path.join(tmp, 'offline')), log=QUIET)
        offline.train()
        run_dir = offline.run_dir
        inside = os.path.normpath(run_dir)
        by_run_dir = trace(lambda v: isinstance(v, str) and os.path.normpath(v).startswith(inside),
                           lambda: runner.resume(run_dir, {'offline_steps': 12}, log=QUIET))
    print(f'flowrl from {os.path.dirname(runner.__file__)}')
    print('| followed | calls | modules | run -> engine | engine -> run |')
    print('|---|---:|---:|---:|---:|')
    for name, calls in (('settings (a RunSettings argument)', by_settings),
                        ('--resume\'s run directory', by_run_dir)):
        s = summary(calls)
        print(f'| {name} | {s["calls"]} | {s["modules"]} | {s["run_to_engine"]} | {s["engine_to_run"]} |')
    for name, calls in (('settings', by_settings), ('run directory', by_run_dir)):
        print(f'{name}: ' + ', '.join(summary(calls)['listed']))
    patch.undo()


if __name__ == '__main__':
    main()
