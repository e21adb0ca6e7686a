"""flowrl agents: one module per algorithm, each a set of pure functions (the package
`flowrl.agents`, kept in the repository's agents/ folder).

    from flowrl.agents import fql
    config = fql.get_config()
    state = fql.init(rng, example_batch, config)
    state, metrics = fql.update(state, batch, rng)
    actions = fql.sample_actions(state, observations, rng)

Every module also names `DYNAMIC_KEYS`: the config keys that are pytree leaves of the state
(sweepable under vmap without recompiling). A module may define `prepare_dataset(dataset)`:
the training loop calls it once on the host arrays to add fields its batches need (online
transitions get a field `next_X` from the next transition's X, flowrl/engine/replay.py). A module may
define `explore_actions(state, observations, rng)`: the actions of online environment steps
(the authors' temperature 1), where `sample_actions` is what evaluation runs; without it, online
steps use `sample_actions`. A module with a step schedule (phases, renewals: driven by
`state.step`, which each update raises by one) may define `fit_schedule(config, first_step,
last_step)`: the config values that make the schedule fit the agent steps a run trains, or a
UserError naming values that would (QIPO). A module that does work over the whole dataset at
chosen steps (QIPO's support sets, drawn once per renewal) may define `dataset_work(config)`:
a `flowrl.kit.dataset_work.DatasetWork` (the steps, the per-row arrays it keeps in `state.extras`, the
program run at those steps) or None; its updates then get the batch's dataset rows in
`batch['rows']` and must also work without them. A module whose training has stretches of
different work may define `phase_updates(config)`: ((first_step, update), ...), the update the loop
runs from each first step on (QIPO's three phases; `update` must stay right at every step). A module
that trains on sequences of H steps (action chunking, Q-chunking) defines `sequence_horizon(config)
-> H` (it then takes the run's --horizon_length) and, if it acts with chunks of H' actions,
`action_horizon(config) -> H'`: its `sample_actions` returns [B, H' * A], executed open loop
(flowrl/kit/chunking.py; agents/acfql.py). A module
may define `action_diagnostics(state, observations, rng)`: a dict of scalars computed at every
evaluation, written to eval.csv (QFQL's grad_a Q norms). The list is declared once, with each
hook's stand-in, in flowrl/kit/contract.py (docs/DESIGN.md, "The agent contract").
"""

# One module object per agent file: imported as `agents` (the repository root on sys.path), this
# file's agents would be second copies of flowrl.agents' (flowrl/__init__.py, docs/DESIGN.md).
if __name__ != 'flowrl.agents':
    raise ImportError(f'flowrl\'s agents are the package flowrl.agents, not {__name__}: '
                      'write `from flowrl.agents import fql`.')
