"""The agent kit: what agents (agents/*.py) are built from.

It owns the agent state (`agent_state`: params, targets, optimizer states, dynamic
hyperparameters as leaves), the networks (`networks`: MLP, critic ensemble, velocity field;
`encoders`: image encoders), the flow math (`flow`: interpolation, targets, Euler sampling), the
losses (`losses`), action distributions (`distributions`), the batch format of pixel observations
(`pixels`: frames stored once, stacks gathered by index, random crops), an agent's work over the
whole dataset (`dataset_work`) and the agent contract (`contract`: the names an agent defines,
its optional hooks). Loading an agent file is the registry's (flowrl.registry). It may import
only the base modules at flowrl/ top (errors, ...): nothing here knows a benchmark, a training loop
or a run.
"""
