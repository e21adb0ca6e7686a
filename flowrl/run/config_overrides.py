"""Parses `--agent.KEY=VALUE` and `--sweep=agent.KEY=V1,V2,...` against an agent's config.

Done here rather than by ml_collections' config flags so that every mistake (unknown key,
a value of the wrong type) is one clear sentence instead of a traceback.
"""

import ast
import itertools

import ml_collections

from flowrl.run.config_rules import config_problems, value_problem
from flowrl.errors import UserError

AGENT_PREFIX = '--agent.'


def split_agent_flags(argv):
    """Separates `--agent.KEY=VALUE` tokens from the rest of argv; returns (rest, {KEY: raw})."""
    rest, raw = [], {}
    for token in argv:
        if token.startswith(AGENT_PREFIX):
            key, sep, value = token[len(AGENT_PREFIX):].partition('=')
            if not sep:
                raise UserError(f'{token!r} needs a value: write --agent.{key}=VALUE.')
            raw[key] = value
        else:
            rest.append(token)
    return rest, raw


def parse_value(key: str, raw: str, default, flag: str | None = None):
    """Converts the string `raw` to the type of the config's default value for `key`, and
    refuses values the key cannot take (see flowrl.run.config_rules); `flag` names it in errors."""
    flag = flag or f'--agent.{key}'
    value = _convert(raw, default, flag)
    requirement = value_problem(key, value)
    if requirement is not None:
        raise UserError(f'{flag} must be {requirement}, got {raw!r}.')
    return value


def _convert(raw: str, default, flag: str):
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered not in ('true', 'false', '1', '0'):
                raise ValueError
            return lowered in ('true', '1')
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, (tuple, list)):
            value = ast.literal_eval(raw if raw.strip().startswith(('(', '[')) else f'({raw},)')
            return tuple(value)
        if default is None:
            try:
                return ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                return raw
        return raw
    except (ValueError, SyntaxError, TypeError):
        kind = type(default).__name__
        raise UserError(f'{flag} expects a {kind} like {default!r}, got {raw!r}.') from None


def check_key(config, key: str, source: str):
    if key not in config:
        known = ', '.join(sorted(config.keys()))
        raise UserError(f'Unknown config key {key!r} for {source}; known keys: {known}.')


def apply_overrides(config: ml_collections.ConfigDict, raw: dict, source: str) -> ml_collections.ConfigDict:
    """A copy of `config` with the raw `--agent.KEY=VALUE` strings parsed and applied."""
    config = ml_collections.ConfigDict(config.to_dict())
    for key, value in raw.items():
        check_key(config, key, source)
        config[key] = parse_value(key, value, config[key])
    return config


def parse_sweeps(specs, config, dynamic_keys, source: str) -> list[tuple[str, list]]:
    """`['agent.alpha=3,10,30', ...]` -> [('alpha', [3.0, 10.0, 30.0]), ...]; keys must be dynamic."""
    sweeps, raw_values = [], {}
    for spec in specs:
        target, sep, values = spec.partition('=')
        if not sep or not target.startswith('agent.') or not values:
            raise UserError(f'--sweep={spec!r} must look like --sweep=agent.alpha=3,10,30.')
        key = target[len('agent.'):]
        check_key(config, key, source)
        if key not in dynamic_keys:
            raise UserError(f'--sweep over {key!r} is not possible in one program: {source} can only sweep '
                            f'its dynamic hyperparameters ({", ".join(dynamic_keys)}).')
        if key in raw_values:
            raise UserError(f'--sweep gives agent.{key} twice ({raw_values[key]} and {values}); list all its values '
                            f'in one flag: --sweep=agent.{key}={raw_values[key]},{values}.')
        raw_values[key] = values
        parsed = [parse_value(key, v, config[key], flag=f'--sweep=agent.{key}') for v in values.split(',')]
        repeated = sorted({repr(v) for v in parsed if parsed.count(v) > 1})
        if repeated:
            raise UserError(f'--sweep={spec} lists {", ".join(repeated)} more than once; give each value once '
                            '(use --num_seeds for repeated runs of one value).')
        sweeps.append((key, parsed))
    return sweeps


def check_config(config, source: str) -> None:
    """Refuses a resolved config (defaults, presets and overrides together) that breaks a value rule."""
    problems = config_problems(config)
    if problems:
        key, value, requirement = problems[0]
        raise UserError(f'{source}: config key {key!r} must be {requirement}, got {value!r}.')


def sweep_grid(sweeps) -> list[dict]:
    """Every combination of the swept values, as one dict per combination ([{}] without sweeps)."""
    keys = [key for key, _ in sweeps]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(values for _, values in sweeps))]
