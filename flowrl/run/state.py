"""What changes while a run trains, shared by its parts (flowrl.run.offline, flowrl.run.online_steps,
flowrl.run.evaluating, the runner): the member-stacked agent states and keys, the update reached,
the agent step the run started at, and which members still train (`alive`) or diverged."""

import numpy as np

from flowrl.errors import TrainingDiverged


class RunState:
    def __init__(self, states, rngs, active: np.ndarray, first_agent_step: int):
        self.states, self.rngs = states, rngs
        self.step = 0  # updates (offline, then online steps) this run has made
        self.first_agent_step = first_agent_step  # the agents' step at update 0 (a --restore_path run's offset)
        self.alive = active.copy()  # members still training (not diverged; inactive ones never)
        self.diverged = {}  # member index -> dict(diverged_at_update, diverged_metrics)

    def rows(self, labels: list, values: dict) -> list[dict]:
        """One log row per member still training (diverged members are no longer logged)."""
        return [dict(step=self.step, **label, **{k: float(v[i]) for k, v in values.items()})
                for i, label in enumerate(labels) if self.alive[i]]

    def agent_step(self, placement, agent_path: str) -> int:
        """The agents' step, from which their phase is derived: the step they started this run at
        plus the run's updates. Every member still training must hold it (each update adds one to
        `state.step`); one that does not means an update broke that contract, and training on would
        run phases by a step the agents do not have."""
        expected = self.first_agent_step + self.step
        steps = getattr(self.states, 'step', None)  # an agent state without a step counter: the run's
        if steps is None:
            return expected
        held = np.asarray(placement.gather(steps))[self.alive]
        if np.any(held != expected):
            raise RuntimeError(f'At update {self.step:,} of this run the agents hold step(s) '
                               f'{sorted(set(held.tolist()))} and should hold {expected:,}: '
                               f'{agent_path} does not add one to state.step per update.')
        return expected


class Divergence:
    """Records members whose metrics turned non-finite (`first_bad` >= 0: the program kept their
    pre-chunk state): in a sweep they are recorded and frozen and the others go on; a single
    member, or the last ones alive, stop the run."""

    def __init__(self, now: RunState, labels: list, files, log):
        self.now, self.labels, self.files, self.log = now, labels, files, log

    def __call__(self, means: dict, first_bad, chunk_start: int) -> None:
        now = self.now
        bad = np.asarray(first_bad)
        new = [i for i in np.nonzero(bad >= 0)[0] if now.alive[i]]
        for i in new:
            names = [k for k, v in means.items() if not np.isfinite(v[i])]
            now.diverged[int(i)] = dict(diverged_at_update=chunk_start + int(bad[i]) + 1,
                                        diverged_metrics=names or ['metrics'])
        if not new:
            return
        described = '; '.join(f'member {self.labels[i]} produced non-finite '
                              f'{", ".join(now.diverged[i]["diverged_metrics"])} at update '
                              f'{now.diverged[i]["diverged_at_update"]}' for i in new)
        if len(new) == now.alive.sum():
            raise TrainingDiverged(f'Training diverged: {described}; {self.files.checkpoint_note()}.')
        now.alive[new] = False
        self.files.write_diverged(now.diverged)
        self.log(f'Diverged: {described}; frozen at update {chunk_start:,} and left out of evaluations and '
                 f'results, the other {int(now.alive.sum())} member(s) go on.')
