"""The registry: flowrl's agents and their presets, found by name.

It owns the loading of an agent file (`agent_loading`: `--agent=agents/fql.py`, checked against
the agent contract; flowrl's own agents imported as `flowrl.agents.X`) and the lookup of the
papers' per-environment values in configs/<agent>.py (`presets`: the tables a task names, the
keys a run names when no preset gives them, the config a run gets without overrides).

Layer: above the agents and configs (it imports them, by name), below the results and the run
that use it. It may import the base modules, flowrl.kit, flowrl.suites, flowrl.agents and
flowrl.configs; nothing it imports may import it (agents and configs never name it).
"""
