"""Online fine-tuning (--online_steps), one environment step at a time: the members' environments
(one per member, on this process's members) take the next action of each member's action queue,
then one compiled program (flowrl.engine.online.OnlineProgram) appends the transitions to the
members' on-device replay buffers, updates and acts. With --horizon_length=H the members act on
chunks of H actions, open loop (flowrl.engine.action_queue): a member whose chunk is used up or
whose episode ended takes the new chunk the updated agent sampled at its next observation, the
others keep theirs (H = 1: a new action every step). The buffers and the action queues are part
of the run's Position (flowrl.run.state); the environments, with their running episodes, are this
part's own. The loop (flowrl.run.loop) decides how many steps and what follows."""

import jax
import numpy as np

from flowrl.engine import replay
from flowrl.engine.action_queue import ActionQueues
from flowrl.engine.online import EXPLORATION_KEYS, MemberEnvs, empty_buffers
from flowrl.run.state import Position


class OnlineSteps:
    def __init__(self, program, chunks, dataset, placement, make_env, seeds: list, reward_function,
                 observation_dtype, workers: int, capacity: int, horizon_length: int = 1):
        """`program`: the OnlineProgram; `chunks`: the ChunkRunner (its metric names); `seeds`: every
        member's seed (padded); `capacity`: rows of each member's buffer (None: the run has no online steps);
        `horizon_length`: the actions of each chunk the members act with (--horizon_length)."""
        self.program, self.chunks, self.dataset, self.placement = program, chunks, dataset, placement
        self.capacity, self.horizon_length = capacity, horizon_length
        self.make_env, self.seeds, self.reward_function = make_env, seeds, reward_function
        self.observation_dtype, self.workers = observation_dtype, workers
        self.envs = None  # the members' environments, made at the first online step or a resume

    def abstract_buffers(self):
        """Shapes, dtypes and placement of the members' online buffers (nothing allocated)."""
        one = jax.eval_shape(lambda: replay.empty_like(self.dataset, self.capacity))
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct((self.placement.padded,) + x.shape, x.dtype,
                                                           sharding=self.placement.member_sharding), one)

    def episodes(self, position: Position) -> dict:
        """The members' running episodes (MemberEnvs.record: reset seeds, actions so far, observations)
        and their action queues (ActionQueues.record: the chunk being executed and how much of it was
        taken; with H = 1 the next actions): what a resumed run replays to continue them exactly,
        mid-chunk too. Each process records the episodes of its own members' environments."""
        return self.placement.put_local(dict(self.envs.record(), **position.queues.record()))

    def abstract_episodes(self):
        """Shapes, dtypes and placement of `episodes` (the environments must exist)."""
        record = {k: (v.shape[1:], v.dtype) for k, v in self.envs.record().items()}
        queues = ActionQueues.record_shapes(1, self.horizon_length, self.envs.actions_taken.shape[2:])
        record.update({k: (shape[1:], dtype) for k, (shape, dtype) in queues.items()})
        sharding = self.placement.member_sharding
        return {k: jax.ShapeDtypeStruct((self.placement.padded,) + shape, dtype, sharding=sharding)
                for k, (shape, dtype) in record.items()}

    def make_envs(self):
        """The environments of this process's members, made once."""
        if self.envs is None:
            seeds = [self.seeds[i] for i in self.placement.local_members]
            self.envs = MemberEnvs(self.make_env, seeds, min(self.workers, len(seeds)), self.reward_function,
                                   self.observation_dtype)

    def restored(self, position: Position, episodes) -> Position:
        """The position of a checkpoint saved online, whose running episodes the environments replay
        to continue them exactly; returns it with their action queues."""
        episodes = jax.device_get(self.placement.local(episodes))
        queues = ActionQueues.from_record(episodes, self.horizon_length)
        self.envs.replay(episodes)  # reads the episodes' keys, not the queues'
        return position.replace(queues=queues)

    def start(self, position: Position, update) -> Position:
        """The first online step's position: empty buffers unless restored, metric sums for `update`,
        and the members' environments started on their first episodes with their first chunks."""
        placement = self.placement
        self.make_envs()
        if position.buffers is None:
            position = position.replace(buffers=empty_buffers(self.dataset, placement.padded, self.capacity,
                                                              placement.member_sharding))
        if position.totals is None:
            totals = jax.device_put(self.chunks.zero_totals(update, position.states, self.dataset),
                                    placement.member_sharding)
            position = position.replace(totals=totals)
        if position.queues is None:
            observations = placement.put_local(self.envs.restart(position.step))
            rngs, actions = self.program.first_actions(position.states, position.rngs, observations)
            action_size = self.envs.actions_taken.shape[-1]  # the environments' (checked once: the first chunks)
            position = position.replace(rngs=rngs, queues=ActionQueues.fresh(placement.local(actions),
                                                                            self.horizon_length, action_size))
        return position

    def step(self, position: Position, update):
        """One environment step of every member and one `update` on a batch of dataset and buffer:
        (position, first_bad [members]: 0 where this step's update turned non-finite, else -1).
        Each process steps its own members' environments; one small gather tells every process
        which members diverged. The buffers get the single step each member took.

        Which members take a new chunk is known on the host after the environment step; the
        program samples one for every member anyway (under vmap the others cost nothing extra),
        and the host keeps it where it is needed, which leaves the compiled program as it is for H = 1."""
        placement = self.placement
        stepped, episode_ended = self._environment_step(position)
        transitions, observations = placement.put_local(stepped)
        states, rngs, totals, buffers, first_bad, actions = self.program.step(
            update, position.states, position.rngs, position.totals, placement.put(position.alive), position.buffers,
            transitions, observations, self.dataset)
        queues = position.queues.stepped(episode_ended)
        queues = queues.refilled(jax.device_get(placement.local(actions)), queues.needs_chunk())
        position = position.replace(states=states, rngs=rngs, totals=totals, buffers=buffers, queues=queues,
                                    step=position.step + 1, counted=position.counted + 1)
        return position, placement.gather(first_bad)

    def _environment_step(self, position: Position):
        """((transitions, next observations) of every member's environment stepped with the next
        action of its queue, [members] bool: whose episode ended)."""
        transitions, observations = self.envs.step(position.queues.next_actions(), position.step + 1)
        return (transitions, observations), np.asarray(transitions['terminals']) > 0

    def means(self, position: Position) -> dict:
        return {k: v / position.counted for k, v in self.placement.gather(position.totals).items()}

    def exploration(self) -> dict:
        """Exploration statistics of the episodes ended since the last row (online runs only)."""
        if self.capacity is None:
            return {}
        if self.envs is None:
            return {k: np.full(self.placement.padded, np.nan) for k in EXPLORATION_KEYS}
        return self.placement.gather(self.envs.statistics())

    def close(self):
        if self.envs is not None:
            self.envs.close()
