"""The compiled engine: the programs that train and evaluate members, and what they run on.

It owns the chunked training loop (`training`: jit(shard_map(members(loop over updates))), the
one builder of member programs, sampling, dataset work, phases), online fine-tuning (`online`:
the step program and the members' environments; `replay`: on-device buffers), batched
evaluation (`evaluation`), acting on chunks of actions (`action_queue`), worker pools of environments (`env_pool`), checkpoints
(`checkpoints`), the member placement over devices and processes (`placement`) and the traced
cost model (`costs`). It may import the base modules and flowrl.kit; it knows no benchmark suite
(environments come as factories, datasets as arrays) and no run (settings, files, loggers).
"""
