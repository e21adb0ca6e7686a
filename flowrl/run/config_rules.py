"""Which values an agent config key may take, decided by the key's name.

One table for every agent (the agents share their key names: `lr`, `discount`, `tau`,
`batch_size`, `*_hidden_dims`, `flow_steps`, ...), so a new agent gets the same checks without
writing any. `value_problem` says what is wrong with a value; the callers (command-line
parsing, the resolved config of a run) turn that into one sentence before any work starts.
"""

import fnmatch
import math
import numbers


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(value) -> bool:
    return _is_int(value) and value > 0


def _non_negative_int(value) -> bool:
    return _is_int(value) and value >= 0


def _positive_int_tuple(value) -> bool:
    return isinstance(value, (tuple, list)) and all(_positive_int(size) for size in value)


def _non_negative(value) -> bool:
    return _is_number(value) and value >= 0


def _unit_closed(value) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _unit_left_open(value) -> bool:
    return _is_number(value) and 0 < value <= 1


def _number_or_none(value) -> bool:
    return value is None or _is_number(value)


# (key name pattern, check, what the value must be); the first pattern that matches applies.
RULES = (
    ('lr', _non_negative, 'a non-negative learning rate'),
    ('*_lr', _non_negative, 'a non-negative learning rate'),
    ('discount', _unit_closed, 'a discount in [0, 1]'),
    ('tau', _unit_left_open, 'a Polyak rate in (0, 1]'),
    ('expectile', _unit_closed, 'an expectile in [0, 1]'),
    ('target_entropy', _number_or_none, 'a number (or None: SAC then uses -target_entropy_multiplier * action_dim)'),
    ('flow_steps', _positive_int, 'a positive integer (Euler steps)'),
    ('*_steps', _non_negative_int, 'a non-negative integer'),
    ('batch_size', _positive_int, 'a positive integer'),
    ('num_*', _positive_int, 'a positive integer'),
    ('*_support', _positive_int, 'a positive integer'),
    ('*_freq', _positive_int, 'a positive integer'),
    ('*_period', _positive_int, 'a positive integer'),
    ('*_rows', _positive_int, 'a positive integer (rows)'),
    ('*_dims', _positive_int_tuple, 'a tuple of positive integer layer sizes such as (512, 512)'),
)
# Keys where +inf is meaningful: "no clipping" (QFQL documents grad_clip=inf as off).
INFINITY_ALLOWED = ('*_clip',)


def value_problem(key: str, value) -> str | None:
    """What `value` must be instead, for config key `key`; None when it is acceptable."""
    if _is_number(value) and not math.isfinite(value):
        allowed = value == math.inf and any(fnmatch.fnmatchcase(key, p) for p in INFINITY_ALLOWED)
        if not allowed:
            return 'a finite number'
    for pattern, check, requirement in RULES:
        if fnmatch.fnmatchcase(key, pattern):
            return None if check(value) else requirement
    return None


def config_problems(config) -> list[tuple[str, object, str]]:
    """(key, value, requirement) for every key of `config` whose value breaks its rule."""
    problems = []
    for key, value in config.items():
        requirement = value_problem(key, value)
        if requirement is not None:
            problems.append((key, value, requirement))
    return problems
