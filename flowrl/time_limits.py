"""An environment's time limit, read one way wherever it matters: the online loop's episode
records (flowrl.engine.env_pool) and the splitting of D4RL files without `timeouts` by the
evaluation environment's episode length (flowrl.suites.d4rl)."""


def time_limit(env) -> int | None:
    """The episode length limit: the registered spec's, else that of a TimeLimit wrapper put on an
    environment built without gymnasium.make (flowrl.suites.d4rl_antmaze); None without one."""
    limit = getattr(getattr(env, 'spec', None), 'max_episode_steps', None)
    while limit is None and hasattr(env, 'env'):
        limit = getattr(env, '_max_episode_steps', None)
        env = env.env
    return limit
