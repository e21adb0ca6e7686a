"""Online fine-tuning of a run (--online_steps): the members' environments (one per member, on
this process's members), their on-device replay buffers and running episodes, and the steps
themselves: per environment step the environments take the pending actions, then one compiled
program (flowrl.engine.online.OnlineProgram) appends, updates and acts."""

import time

import jax
import numpy as np

from flowrl.engine import replay
from flowrl.engine.online import EXPLORATION_KEYS, MemberEnvs, empty_buffers
from flowrl.engine.replay import online_capacity
from flowrl.engine.training import phase_at
from flowrl.kit import pixels


class OnlineSteps:
    def __init__(self, s, program, chunks, dataset, placement, now, make_env, seeds: list, reward_function,
                 observation_dtype, workers: int, divergence, stop_requested):
        """`program`: the OnlineProgram; `chunks`: the ChunkRunner (its phases and metric sums);
        `seeds`: every member's seed (padded); `now`, `divergence`, `stop_requested`: as
        flowrl.run.offline.OfflineChunks takes them."""
        self.s, self.program, self.chunks, self.dataset, self.placement, self.now = (
            s, program, chunks, dataset, placement, now)
        self.make_env, self.seeds, self.reward_function = make_env, seeds, reward_function
        self.observation_dtype, self.workers = observation_dtype, workers
        self.divergence, self.stop_requested = divergence, stop_requested
        self.buffers = None  # member-stacked online replay buffers, from the first online step
        self.envs, self.actions = None, None  # the members' environments and their next actions

    def capacity(self) -> int:
        rows = pixels.num_transitions(self.dataset)
        return online_capacity(self.s.online_steps, rows, self.s.buffer_size, bool(self.s.balanced_sampling))

    def abstract_buffers(self):
        """Shapes, dtypes and placement of the members' online buffers (nothing allocated)."""
        one = jax.eval_shape(lambda: replay.empty_like(self.dataset, self.capacity()))
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct((self.placement.padded,) + x.shape, x.dtype,
                                                           sharding=self.placement.member_sharding), one)

    def episodes(self) -> dict:
        """The members' running episodes (MemberEnvs.record: reset seeds, actions so far, observations)
        and the actions they take next: what a resumed run replays to continue them exactly. Each
        process records the episodes of its own members' environments."""
        return self.placement.put_local(dict(self.envs.record(), next_actions=np.asarray(self.actions, np.float32)))

    def abstract_episodes(self):
        """Shapes, dtypes and placement of `episodes` (the environments must exist)."""
        record = dict(self.envs.record(), next_actions=np.zeros(self.envs.actions_taken[:, 0].shape, np.float32))
        return {k: jax.ShapeDtypeStruct((self.placement.padded,) + v.shape[1:], v.dtype,
                                        sharding=self.placement.member_sharding) for k, v in record.items()}

    def make_envs(self):
        """The environments of this process's members, made once."""
        if self.envs is None:
            seeds = [self.seeds[i] for i in self.placement.local_members]
            self.envs = MemberEnvs(self.make_env, seeds, min(self.workers, len(seeds)), self.reward_function,
                                   self.observation_dtype)

    def restore(self, buffers, episodes) -> None:
        """Continues from a checkpoint's buffers and running episodes (None: saved offline)."""
        self.buffers = buffers
        if episodes is not None:
            episodes = jax.device_get(self.placement.local(episodes))
            self.actions = np.asarray(episodes.pop('next_actions'))
            self.envs.replay(episodes)

    def _start_episodes(self):
        """The members' environments start their first episodes (at the first online step); their
        first actions."""
        now = self.now
        self.make_envs()
        if self.buffers is None:
            self.buffers = empty_buffers(self.dataset, self.placement.padded, self.capacity(),
                                         self.placement.member_sharding)
        observations = self.placement.put_local(self.envs.restart(now.step))
        now.rngs, actions = self.program.first_actions(now.states, now.rngs, observations)
        self.actions = np.asarray(self.placement.local(actions))

    def until(self, stop: int, totals, counted: int, pacer, progress, agent_path: str):
        """Online steps up to update `stop` (see OfflineChunks.until): per step, the members'
        environments take the pending actions, then one compiled program appends, updates and acts."""
        now, placement = self.now, self.placement
        update = phase_at(self.chunks.phases, now.agent_step(placement, agent_path))
        if totals is None:
            totals = jax.device_put(self.chunks.zero_totals(update, now.states, self.dataset),
                                    placement.member_sharding)
        if self.actions is None:
            self._start_episodes()
        means = None
        while now.step < stop and not self.stop_requested():
            # Every process makes the same gathers: process 0's pacer decides how many steps between them.
            steps, began = min(stop - now.step, placement.agreed(pacer.size())), time.monotonic()
            for _ in range(steps):
                # Each process steps its own members' environments; one small gather per step tells
                # every process which members diverged.
                transitions, observations = placement.put_local(self.envs.step(self.actions, now.step + 1))
                now.states, now.rngs, totals, self.buffers, first_bad, actions = self.program.step(
                    update, now.states, now.rngs, totals, placement.put(now.alive), self.buffers, transitions,
                    observations, self.dataset)
                self.actions = np.asarray(jax.device_get(placement.local(actions)))
                first_bad = placement.gather(first_bad)
                now.step, counted = now.step + 1, counted + 1
                if np.any(first_bad >= 0):
                    self.divergence(self.means(totals, counted), first_bad, now.step - 1)
            seconds = time.monotonic() - began
            pacer.record(steps, seconds)
            means = self.means(totals, counted)
            progress.advanced(steps, seconds, {k: np.mean(v[now.alive]) for k, v in means.items()})
        return totals, counted, means

    def means(self, totals, counted: int) -> dict:
        return {k: v / counted for k, v in self.placement.gather(totals).items()}

    def exploration(self) -> dict:
        """Exploration statistics of the episodes ended since the last row (online runs only)."""
        if not self.s.online_steps:
            return {}
        if self.envs is None:
            return {k: np.full(self.placement.padded, np.nan) for k in EXPLORATION_KEYS}
        return self.placement.gather(self.envs.statistics())

    def close(self):
        if self.envs is not None:
            self.envs.close()
