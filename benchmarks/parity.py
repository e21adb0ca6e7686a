"""Parity of flowrl's agents with the authors' code (github.com/seohongpark/fql): same data,
same config, the same curves of every metric both codes log, offline and offline-to-online.

    python benchmarks/parity.py --agent iql --official_repo PATH/TO/fql \
        --official_python PATH/TO/fql-venv/bin/python --out_dir parity
    python benchmarks/parity.py --agent sac --offline_steps 0 --online_steps 2000 --balanced_sampling 1 ...

Agents: fql, iql, rebrac, ifql, sac (every agent the authors' repository implements). Online
fine-tuning (`--online_steps`, `--balanced_sampling`, the FQL README's flags) for fql and sac.

Q-chunking (github.com/ColinQiyangLi/qc, its `agents/acfql.py`), offline, in the same virtualenv:

    python benchmarks/parity.py --agent acfql --official_repo PATH/TO/qc \
        --official_python PATH/TO/fql-venv/bin/python --seeds 4 --offline_steps 3000 --hidden 64,64,64,64
    python benchmarks/parity.py --agent acfql --actor_type best-of-n --actor_num_samples 32 ...   # QC

`--agent acfql` is QC-FQL (alpha 100, the QC README's); `--actor_type best-of-n
--actor_num_samples 32` is QC; `--horizon_length` (default 5, QC's main.py default) goes to both
programs, `--set action_chunking=false` gives FQL-n/BFN-n, `--sparse` QC's flag. The QC driver
runs its main.py's offline loop (Dataset.create, `--sparse`, the example batch, `sample_sequence`,
`update`); its reward sum and its bootstrap both use the config's discount (flowrl's agent has one).

1. Generates (or reuses) a reduced cube-single-play dataset with flowrl's generator
   (`python -m flowrl.suites.data generate cube-single-play-v0 --episodes N`), and points both programs
   at the same files: flowrl through `--dataset_path`, the official code through
   `ogbench.make_env_and_datasets(..., dataset_path=...)` (its loader, relabelling and action
   clipping are the official ones).
2. Trains the official agent for each seed in the official virtualenv with a driver that runs
   the loop of the official main.py (its `Dataset`/`ReplayBuffer`, `agent.update`, ReBRAC's
   `full_update`, the online branch's environment steps, buffer and balanced sampling, its
   `evaluate`), seeded as its main.py does, logging window means of each update's metrics
   (main.py logs the last update's; a mean over the window is what flowrl logs); and
   flowrl through main.py with `--num_seeds`. The two configs are compared key by key: every
   key both have must be equal (`compare_configs`).
3. Compares, at every log step, every metric both codes log with the same meaning (`AGENTS`:
   the name in each code, a unit factor where one code sums what the other averages; the
   metrics one code logs under a name the other uses for another quantity are listed in
   `NOT_COMPARABLE` with the reason, and printed): mean and spread over seeds of each program.
   A point agrees when |mean difference| <= 3 standard errors of that difference
   (sqrt(var_a / n_a + var_b / n_b), seed variance with ddof 1); a metric agrees when at least 80%
   of its compared log steps do. Seeds of the two programs are independent draws (different
   RNG use), so only the distribution over seeds can be compared. With `--eval_episodes`, both
   programs evaluate the final policy (success and return), compared by the same rule.

`--agent fql` at the defaults takes about 10 minutes on 2 idle CPU cores. Prints a table per
metric, a verdict and the summary at the last log step (`final_table`); with `--out_dir`, also
writes parity_<agent>[_online].json (every curve) and .md (the same text). Exit status 1 when a
metric differs.
"""

import argparse
import csv
import dataclasses
import glob
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # flowrl of this checkout, for the rules that use its code (SAC's entropy, the sampler)
DATASET = 'cube-single-play-v0'
ENV_NAME = 'cube-single-play-singletask-v0'
AGREEMENT_SE, AGREEMENT_FRACTION = 3.0, 0.8


@dataclasses.dataclass(frozen=True)
class Metric:
    """One quantity both codes log: flowrl's train.csv column, the official info key, a label.

    `official_per_flowrl`: official value = flowrl value times this (e.g. the action dimension
    where the official code sums squared errors over action dimensions and flowrl averages them).
    `full_updates_only`: a ReBRAC actor metric: flowrl's update returns zeros on the updates
    without an actor step (`actor/updated` 0), so its window mean is divided by the window mean
    of `actor/updated`; the official code returns no actor metrics on those updates, and its
    window mean is over the updates that have them.
    """

    flowrl: str
    official: str
    label: str
    official_per_flowrl: float | str = 1.0  # a number, or 'action_dim'
    full_updates_only: bool = False


IQL_VALUE_AND_CRITIC = (
    Metric('value/loss', 'value/value_loss', 'value loss'),
    Metric('value/v_mean', 'value/v_mean', 'mean V'),
    Metric('value/v_max', 'value/v_max', 'max V'),
    Metric('value/v_min', 'value/v_min', 'min V'),
    Metric('critic/loss', 'critic/critic_loss', 'critic loss'),
)
CRITIC_Q = (
    Metric('critic/q_mean', 'critic/q_mean', 'mean Q on data actions'),
    Metric('critic/q_max', 'critic/q_max', 'max Q on data actions'),
    Metric('critic/q_min', 'critic/q_min', 'min Q on data actions'),
)
EXPLORATION = (
    Metric('exploration/success', 'exploration/success', 'exploration success'),
    Metric('exploration/episode_return', 'exploration/episode.return', 'exploration return'),
    Metric('exploration/episode_length', 'exploration/episode.length', 'exploration episode length'),
)
EVALUATION = (
    Metric('success', 'evaluation/success', 'evaluation success'),
    Metric('episode_return', 'evaluation/episode.return', 'evaluation return'),
)

AGENTS = {
    'fql': (Metric('critic/loss', 'critic/critic_loss', 'critic loss'), *CRITIC_Q,
            Metric('actor/loss', 'actor/actor_loss', 'actor loss'),
            Metric('actor/bc_flow_loss', 'actor/bc_flow_loss', 'BC flow loss'),
            Metric('actor/distill_loss', 'actor/distill_loss', 'distillation loss'),
            Metric('actor/q_loss', 'actor/q_loss', 'actor Q loss'),
            Metric('actor/q', 'actor/q', 'mean Q on policy actions'),
            Metric('actor/mse_to_data', 'actor/mse', 'policy MSE to data actions')),
    'iql': (*IQL_VALUE_AND_CRITIC,
            Metric('actor/loss', 'actor/actor_loss', 'actor loss'),
            Metric('actor/adv', 'actor/adv', 'mean advantage'),
            Metric('actor/log_prob', 'actor/bc_log_prob', 'log-likelihood of data actions'),
            Metric('actor/mse_to_data', 'actor/mse', 'actor mean MSE to data actions')),
    'ifql': (*IQL_VALUE_AND_CRITIC,
             Metric('actor/bc_flow_loss', 'actor/actor_loss', 'BC flow loss')),
    'rebrac': (Metric('critic/loss', 'critic/critic_loss', 'critic loss'), *CRITIC_Q,
               Metric('actor/loss', 'actor/total_loss', 'actor loss', full_updates_only=True),
               Metric('actor/q_loss', 'actor/actor_loss', 'actor Q loss', full_updates_only=True),
               Metric('actor/bc_loss', 'actor/bc_loss', 'actor BC loss', full_updates_only=True),
               Metric('actor/mse_to_data', 'actor/mse', 'squared error to data actions (official: summed '
                      'over action dims)', official_per_flowrl='action_dim', full_updates_only=True)),
    'sac': (Metric('critic/loss', 'critic/critic_loss', 'critic loss'), *CRITIC_Q,
            Metric('actor/loss', 'actor/actor_loss', 'actor loss'),
            Metric('actor/alpha_loss', 'actor/alpha_loss', 'temperature loss'),
            Metric('actor/alpha', 'actor/alpha', 'temperature alpha'),
            Metric('actor/entropy', 'actor/entropy', 'policy entropy'),
            Metric('actor/std', 'actor/std', 'policy std'),
            Metric('actor/q', 'actor/q', 'mean Q on policy actions')),
    # QC-FQL and QC (actor_type best-of-n): the authors' Q-chunking agent (ColinQiyangLi/qc). With
    # best-of-n the QC code logs a distillation loss of 0 (no one-step policy) and flowrl none: the
    # metric is then reported as not logged by both.
    'acfql': (Metric('critic/loss', 'critic/critic_loss', 'critic loss'), *CRITIC_Q,
              Metric('actor/loss', 'actor/actor_loss', 'actor loss'),
              Metric('actor/bc_flow_loss', 'actor/bc_flow_loss', 'BC flow loss (valid chunk steps)'),
              Metric('actor/distill_loss', 'actor/distill_loss', 'distillation loss')),
}
ONLINE_AGENTS = ('fql', 'sac')

# The repository each agent's official code is in, and the driver (below) that runs its main.py's loop.
REPOSITORIES = {'fql': 'seohongpark/fql', 'iql': 'seohongpark/fql', 'rebrac': 'seohongpark/fql',
                'ifql': 'seohongpark/fql', 'sac': 'seohongpark/fql', 'acfql': 'ColinQiyangLi/qc'}
# Agents trained on H-step sequences: both programs get the horizon (QC's --horizon_length, whose
# main.py default is 5; flowrl's run flag of the same name).
CHUNKING_AGENTS = {'acfql': 5}
# Agent keys the harness sets with flags of its own (QC's variants: best-of-n with 32 samples is QC).
VARIANT_KEYS = {'acfql': ('actor_type', 'actor_num_samples')}

# Keys one code logs under a name whose quantity differs from the other's: not compared.
NOT_COMPARABLE = {
    'iql': {'critic/q_mean': "official: mean TD target r + discount m V(s'); flowrl: mean Q(s, a)",
            'critic/q_max': 'as critic/q_mean', 'critic/q_min': 'as critic/q_mean',
            'actor/std': 'not logged by flowrl (constant 1 with const_std)'},
    'ifql': {'critic/q_mean': "official: mean TD target r + discount m V(s'); flowrl: mean Q(s, a)",
             'critic/q_max': 'as critic/q_mean', 'critic/q_min': 'as critic/q_mean'},
    'rebrac': {'actor/std': 'a deterministic actor: not logged by flowrl'},
    'sac': {'actor/total_loss': 'not logged by flowrl (actor loss + temperature loss, both compared)'},
    'acfql': {'actor/q_loss': 'not logged by the QC code (flowrl: -mean Q of the one-step policy)'},
}

# Official config keys that are not hyperparameters of the update.
CONFIG_BOOKKEEPING = ('agent_name', 'encoder', 'action_dim')
# Official keys flowrl does not have, at the value where the official code does what flowrl's
# does (any other value is a feature flowrl lacks: the run stops). QC's `normalize_q_loss` is
# not read by its acfql.py, and `fourier_feature_dim` only with Fourier features.
OFFICIAL_ONLY_VALUES = {'acfql': {'use_fourier_features': False, 'weight_decay': 0.0}}

# Runs in the official virtualenv with the official repository first on sys.path. It only calls
# the official code's API (dataset loader, agents, Dataset/ReplayBuffer, evaluate) in the order
# its main.py does; none of that code is copied here.
OFFICIAL_DRIVER = textwrap.dedent('''
    import functools, importlib, json, random, sys
    spec = json.loads(sys.argv[1])
    sys.path.insert(0, spec['repo'])
    import jax, numpy as np, ogbench
    # The official loader has no dataset argument: hand it ours through OGBench's own dataset_path.
    ogbench.make_env_and_datasets = functools.partial(ogbench.make_env_and_datasets,
                                                      dataset_path=spec['dataset_path'])
    from envs.env_utils import make_env_and_datasets
    from agents import agents
    from utils.datasets import Dataset, ReplayBuffer
    from utils.evaluation import evaluate, flatten

    name = spec['agent']
    config = importlib.import_module('agents.' + name).get_config()
    for key, value in spec['overrides'].items():
        config[key] = tuple(value) if isinstance(value, list) else value
    env, eval_env, train, _ = make_env_and_datasets(spec['env_name'])
    seed, offline, online = spec['seed'], spec['offline_steps'], spec['online_steps']
    random.seed(seed)
    np.random.seed(seed)  # main.py seeds numpy's global RNG, which Dataset.sample uses
    train = Dataset.create(**train)
    if spec['balanced_sampling']:
        replay = ReplayBuffer.create({k: v[0] for k, v in train.items()}, size=spec['buffer_size'])
    else:
        train = ReplayBuffer.create_from_initial_dataset(dict(train), size=max(spec['buffer_size'], train.size + 1))
        replay = train
    for dataset in (train, replay):
        dataset.return_next_actions = name == 'rebrac'
    example = train.sample(1)
    agent = agents[name].create(seed, example['observations'], example['actions'], config)

    def update(agent, batch, i):
        if name == 'rebrac':
            return agent.update(batch, full_update=(i % config['actor_freq'] == 0))
        return agent.update(batch)

    rows, window, episodes = [], [], []
    online_rng, done = jax.random.PRNGKey(seed), True
    for i in range(1, offline + online + 1):
        if i <= offline:
            agent, info = update(agent, train.sample(config['batch_size']), i)
        else:
            online_rng, key = jax.random.split(online_rng)
            if done:
                ob, _ = env.reset()
            action = np.array(agent.sample_actions(observations=ob, temperature=1, seed=key))
            next_ob, reward, terminated, truncated, env_info = env.step(action.copy())
            done = terminated or truncated
            replay.add_transition(dict(observations=ob, actions=action, rewards=reward, terminals=float(done),
                                       masks=1.0 - terminated, next_observations=next_ob))
            ob = next_ob
            if done:
                episodes.append({'exploration/' + k: float(np.mean(v)) for k, v in flatten(env_info).items()})
            if spec['balanced_sampling']:
                half = config['batch_size'] // 2
                data, fresh = train.sample(half), replay.sample(half)
                batch = {k: np.concatenate([data[k], fresh[k]], axis=0) for k in data}
            else:
                batch = train.sample(config['batch_size'])
            agent, info = update(agent, batch, i)
        window.append(jax.device_get(info))
        if i % spec['log_interval'] == 0:
            # Mean of each metric over the updates that returned it (ReBRAC's actor metrics
            # come only with full updates), and over the exploration episodes that ended.
            keys = sorted({k for w in window for k in w})
            row = {k: float(np.mean([w[k] for w in window if k in w])) for k in keys}
            for k in sorted({k for e in episodes for k in e}):
                row[k] = float(np.mean([e[k] for e in episodes if k in e]))
            rows.append(dict(step=i, **row))
            window, episodes = [], []
    evaluation = {}
    if spec['eval_episodes']:
        stats, _, _ = evaluate(agent=agent, env=eval_env, config=config, num_eval_episodes=spec['eval_episodes'])
        evaluation = {'evaluation/' + k: float(v) for k, v in stats.items()}
    with open(spec['out'], 'w') as f:
        json.dump(dict(config=config.to_dict(), action_dim=int(example['actions'].shape[-1]), rows=rows,
                       evaluation=evaluation), f)
''')


# Runs in the same virtualenv with a checkout of ColinQiyangLi/qc first on sys.path: the offline
# loop of its main.py (which imports wandb and robomimic helpers, so it is not run itself), with
# its loader, `process_train_dataset` (Dataset.create; --sparse), seeding, example batch,
# `sample_sequence` and `ACFQLAgent.update`. main.py sums the chunk's rewards with its --discount
# flag and discounts the bootstrap with the agent's: both are the config's discount here, as in
# flowrl, whose agent has the one discount.
QC_DRIVER = textwrap.dedent('''
    import functools, json, random, sys
    spec = json.loads(sys.argv[1])
    sys.path.insert(0, spec['repo'])
    import jax, numpy as np, ogbench
    ogbench.make_env_and_datasets = functools.partial(ogbench.make_env_and_datasets,
                                                      dataset_path=spec['dataset_path'])
    from envs.env_utils import make_env_and_datasets
    from agents.acfql import ACFQLAgent, get_config
    from utils.datasets import Dataset

    config = get_config()
    for key, value in spec['overrides'].items():
        config[key] = tuple(value) if isinstance(value, list) else value
    _, _, train, _ = make_env_and_datasets(spec['env_name'])
    seed, horizon = spec['seed'], spec['horizon_length']
    config['horizon_length'] = horizon
    train = Dataset.create(**train)
    if spec['sparse']:
        train = Dataset.create(**dict(train, rewards=(train['rewards'] != 0.0) * -1.0))
    if spec.get('batch_out'):
        # One batch of sample_sequence and the start rows it drew (its first numpy draw, made
        # again from the same seed), for the harness to rebuild with flowrl's sampler. Before
        # main.py's seeding, so that training is as without it.
        np.random.seed(spec['batch_seed'])
        batch = train.sample_sequence(spec['batch_rows'], sequence_length=horizon, discount=config['discount'])
        np.random.seed(spec['batch_seed'])
        starts = np.random.randint(train.size - horizon + 1, size=spec['batch_rows'])
        np.savez(spec['batch_out'], starts=starts, **{k: np.asarray(v) for k, v in batch.items()})
    random.seed(seed)
    np.random.seed(seed)
    example = train.sample(())  # main.py's example batch: one draw of numpy's global RNG
    agent = ACFQLAgent.create(seed, example['observations'], example['actions'], config)

    rows, window = [], []
    for i in range(1, spec['offline_steps'] + 1):
        batch = train.sample_sequence(config['batch_size'], sequence_length=horizon, discount=config['discount'])
        agent, info = agent.update(batch)
        window.append(jax.device_get(info))
        if i % spec['log_interval'] == 0:
            rows.append(dict(step=i, **{k: float(np.mean([w[k] for w in window])) for k in sorted(window[0])}))
            window = []
    with open(spec['out'], 'w') as f:
        json.dump(dict(config=dict(agent.config), action_dim=int(example['actions'].shape[-1]), rows=rows,
                       evaluation={}), f)
''')
DRIVERS = {'seohongpark/fql': OFFICIAL_DRIVER, 'ColinQiyangLi/qc': QC_DRIVER}


# ---- the harness's rules (unit-tested in tests/test_parity.py) ----

def normalized(value):
    return tuple(value) if isinstance(value, list) else value


def resolved_flowrl_config(agent: str, config: dict, action_dim: int) -> dict:
    """flowrl's run config with the values the official `create` fills in itself (SAC's
    target_entropy None -> -target_entropy_multiplier * action_dim, by flowrl's own rule)."""
    if agent != 'sac':
        return config
    import ml_collections

    from flowrl.agents import sac
    return dict(config, target_entropy=sac.target_entropy(ml_collections.ConfigDict(config), action_dim))


def compare_configs(official: dict, flowrl: dict):
    """(shared, differing, only_official): every key both configs have (bookkeeping aside), the
    ones whose values differ {key: (official, flowrl)}, and the official keys flowrl lacks."""
    keys = [k for k in official if k not in CONFIG_BOOKKEEPING]
    shared = {k: normalized(flowrl[k]) for k in keys if k in flowrl}
    differing = {k: (normalized(official[k]), normalized(flowrl[k])) for k in shared
                 if normalized(official[k]) != normalized(flowrl[k])}
    return shared, differing, [k for k in keys if k not in flowrl]


def official_only_conflicts(agent: str, official: dict) -> dict:
    """The official keys flowrl lacks whose value asks the official code for something flowrl's
    agent does not do ({key: (official value, the value matching flowrl)}; `OFFICIAL_ONLY_VALUES`)."""
    required = OFFICIAL_ONLY_VALUES.get(agent, {})
    return {k: (normalized(official[k]), v) for k, v in required.items() if k in official and normalized(official[k]) != v}


def horizon_of(agent: str, requested: int | None) -> int:
    """The H both programs train with: `requested`, or QC's main.py default for a chunking agent
    and 1 for the others (which train on single transitions and take no other)."""
    if requested is None:
        return CHUNKING_AGENTS.get(agent, 1)
    if requested < 1 or (requested != 1 and agent not in CHUNKING_AGENTS):
        raise ValueError(f'--horizon_length must be 1 for {agent} (chunking agents: {", ".join(CHUNKING_AGENTS)}) '
                         f'and a positive integer, got {requested}.')
    return requested


def variant_overrides(agent: str, variants: dict) -> dict:
    """The agent keys given with the harness's variant flags (e.g. --actor_type best-of-n), refused
    for an agent that has no such key."""
    given = {k: v for k, v in variants.items() if v is not None}
    unknown = sorted(set(given) - set(VARIANT_KEYS.get(agent, ())))
    if unknown:
        raise ValueError(f'--{unknown[0]} is a key of {", ".join(a for a, keys in VARIANT_KEYS.items() if unknown[0] in keys)}, '
                         f'not of {agent}.')
    return given


def as_qc_sequences(batch: dict, discount: float) -> dict:
    """flowrl's sequence batch (flowrl.engine.sampling) in the fields and form of QC's
    `sample_sequence`: rewards as running discounted sums (column i: sum_{j <= i} discount^j r_j),
    and the next observation of the last step (QC's `next_observations[:, -1]`, what its agent reads)."""
    rewards = np.asarray(batch['rewards'], np.float64)
    running = np.cumsum(rewards * discount ** np.arange(rewards.shape[-1]), axis=-1)
    fields = {k: np.asarray(batch[k]) for k in ('observations', 'actions', 'masks', 'terminals', 'valid')}
    return dict(fields, rewards=running, next_observations=np.asarray(batch['next_observations']))


def sequence_differences(official: dict, flowrl: dict, discount: float) -> list:
    """The fields of QC's sequence batch that flowrl's batch from the same start rows does not
    reproduce (within float32 rounding of the reward sums)."""
    ours = as_qc_sequences(flowrl, discount)
    theirs = dict(official, next_observations=np.asarray(official['next_observations'])[:, -1])
    return [k for k in ours if np.shape(ours[k]) != np.shape(theirs[k])
            or not np.allclose(ours[k], theirs[k], rtol=1e-5, atol=1e-5)]


def flowrl_value(row: dict, metric: Metric, action_dim: int) -> float:
    """flowrl's logged value of `metric` in the official code's units (nan when absent or empty)."""
    text = row.get(metric.flowrl, '')
    if text in ('', None):
        return math.nan
    value = float(text)
    if metric.full_updates_only:
        value /= float(row['actor/updated'])
    factor = action_dim if metric.official_per_flowrl == 'action_dim' else metric.official_per_flowrl
    return value * factor


def agreement_point(a, b) -> dict:
    """Official seeds `a`, flowrl seeds `b` (nan: not logged that window): the two means and spreads,
    and whether |mean difference| <= AGREEMENT_SE standard errors (None: fewer than two seeds a side)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return dict(official_mean=np.nan, official_std=np.nan, flowrl_mean=np.nan, flowrl_std=np.nan,
                    diff=np.nan, se=np.nan, agree=None)
    se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    diff = float(b.mean() - a.mean())
    return dict(official_mean=float(a.mean()), official_std=float(a.std(ddof=1)), flowrl_mean=float(b.mean()),
                flowrl_std=float(b.std(ddof=1)), diff=diff, se=se, agree=bool(abs(diff) <= AGREEMENT_SE * se))


def compare(official_curves, flowrl_curves, steps, metrics, action_dim: int = 1):
    """Per metric and log step the agreement point; a metric agrees when AGREEMENT_FRACTION of its
    compared steps do (None when no step could be compared). Curves: per seed {step: row}."""
    table = {}
    for metric in metrics:
        points = []
        for step in steps:
            a = [c[step].get(metric.official, np.nan) if step in c else np.nan for c in official_curves]
            b = [flowrl_value(c[step], metric, action_dim) if step in c else np.nan for c in flowrl_curves]
            points.append(dict(step=step, **agreement_point(a, b)))
        compared = [p['agree'] for p in points if p['agree'] is not None]
        fraction = float(np.mean(compared)) if compared else math.nan
        table[metric.label] = dict(points=points, agree_fraction=fraction, compared=len(compared),
                                   agree=(fraction >= AGREEMENT_FRACTION) if compared else None)
    return table


def final_table(table) -> str:
    """The summary docs/RESULTS.md shows: each metric's mean ± std over seeds at its last compared
    log step, official and flowrl, printed so that the document's table is pasted, not typed
    (typing it once gave 'mean Q on policy actions' the numbers of the row above)."""
    lines = ['| metric | step | official | flowrl | agrees at |', '|---|---:|---:|---:|---:|']
    for label, entry in table.items():
        compared = [p for p in entry['points'] if p['agree'] is not None]
        if not compared:
            lines.append(f'| {label} | | not logged | | |')
            continue
        last = compared[-1]
        lines.append(f'| {label} | {last["step"]} | {last["official_mean"]:.4g} ± {last["official_std"]:.2g} | '
                     f'{last["flowrl_mean"]:.4g} ± {last["flowrl_std"]:.2g} | '
                     f'{sum(p["agree"] for p in compared)}/{len(compared)} |')
    return '\n'.join(lines)


def verdict_of(table) -> tuple:
    """(every compared metric agrees, the labels that differ)."""
    differing = [label for label, entry in table.items() if entry['agree'] is False]
    return not differing, differing


def markdown(table, header_lines):
    lines = list(header_lines) + ['']
    for label, entry in table.items():
        if entry['agree'] is None:
            lines += [f'**{label}**: not logged by both programs at any compared step.', '']
            continue
        lines += [f'**{label}** ({100 * entry["agree_fraction"]:.0f}% of {entry["compared"]} log steps within '
                  f'{AGREEMENT_SE:g} SE: {"agrees" if entry["agree"] else "DIFFERS"})', '',
                  '| step | official mean ± std | flowrl mean ± std | difference | 3 SE | agree |',
                  '|---:|---:|---:|---:|---:|:---:|']
        for p in entry['points']:
            if p['agree'] is None:
                continue
            lines.append(f'| {p["step"]} | {p["official_mean"]:.4g} ± {p["official_std"]:.2g} | '
                         f'{p["flowrl_mean"]:.4g} ± {p["flowrl_std"]:.2g} | {p["diff"]:+.3g} | '
                         f'{AGREEMENT_SE * p["se"]:.3g} | {"yes" if p["agree"] else "no"} |')
        lines.append('')
    verdict, differing = verdict_of(table)
    lines.append('Verdict: ' + ('flowrl and the official code agree within seed noise on every compared metric.'
                                if verdict else f'the curves DIFFER beyond seed noise on: {", ".join(differing)}.'))
    return '\n'.join(lines), verdict


# ---- running the two programs ----

def subprocess_env():
    return dict(os.environ, JAX_PLATFORMS='cpu', FLOWRL_NO_DOWNLOAD='1')


def run_checked(command, cwd, what):
    result = subprocess.run(command, cwd=cwd, env=subprocess_env(), capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f'{what} failed (exit {result.returncode}):\n{result.stderr[-4000:]}')
    return result


def dataset_file(dataset_dir, episodes, workers):
    """The reduced dataset's train file, generated with flowrl's generator unless it exists."""
    path = os.path.join(os.path.expanduser(dataset_dir), f'{DATASET}-ep{episodes}.npz')
    if not os.path.exists(path):
        print(f'Generating {path} ({episodes} episodes) ...', flush=True)
        run_checked([sys.executable, '-m', 'flowrl.suites.data', 'generate', DATASET, f'--episodes={episodes}',
                     f'--dataset_dir={dataset_dir}', f'--workers={workers}'], REPO, 'dataset generation')
    return path


def overrides_from(args):
    """The config values both programs get: CPU-sized networks and the agent's key values."""
    hidden = tuple(int(h) for h in args.hidden.split(','))
    overrides = dict(actor_hidden_dims=hidden, value_hidden_dims=hidden, batch_size=args.batch_size)
    for item in args.set or []:
        key, value = item.split('=', 1)
        overrides[key] = json.loads(value)
    return overrides


def total_steps(args):
    return args.offline_steps + args.online_steps


def train_official(args, path, overrides, workdir):
    """Per-seed curves {step: row}, final evaluations, the official config and the action dimension."""
    driver = os.path.join(workdir, 'official_driver.py')
    with open(driver, 'w') as f:
        f.write(DRIVERS[REPOSITORIES[args.agent]])
    curves, evaluations, config, action_dim = [], [], None, None
    for seed in range(args.seeds):
        out = os.path.join(workdir, f'official_seed{seed}.json')
        spec = dict(repo=os.path.abspath(args.official_repo), dataset_path=path, env_name=ENV_NAME, seed=seed,
                    agent=args.agent, offline_steps=args.offline_steps, online_steps=args.online_steps,
                    balanced_sampling=args.balanced_sampling, buffer_size=args.buffer_size,
                    log_interval=args.log_interval, eval_episodes=args.eval_episodes, overrides=overrides, out=out,
                    horizon_length=args.horizon_length, sparse=args.sparse)
        print(f'Official {args.agent}, seed {seed} ...', flush=True)
        run_checked([args.official_python, driver, json.dumps(spec)], args.official_repo, f'official seed {seed}')
        with open(out) as f:
            result = json.load(f)
        config, action_dim = result['config'], result['action_dim']
        curves.append({row['step']: row for row in result['rows']})
        evaluations.append(result['evaluation'])
    return curves, evaluations, config, action_dim


def check_sequence_batch(args, path, overrides, workdir, rows=1024):
    """QC's `sample_sequence` batch against flowrl's sampler at the same start rows of the same
    data (the rows of both loaders are equal): the fields that differ (exit when any does)."""
    import jax.numpy as jnp

    from flowrl.engine import sampling
    from flowrl.suites.data.loading import load_singletask_data
    from flowrl.suites.ogbench import sparse_rewards

    driver, out = os.path.join(workdir, 'qc_batch_driver.py'), os.path.join(workdir, 'qc_batch.npz')
    with open(driver, 'w') as f:
        f.write(QC_DRIVER)
    spec = dict(repo=os.path.abspath(args.official_repo), dataset_path=path, env_name=ENV_NAME, seed=0, offline_steps=0,
                log_interval=1, overrides=overrides, horizon_length=args.horizon_length, sparse=args.sparse,
                batch_out=out, batch_seed=12345, batch_rows=rows, out=os.path.join(workdir, 'qc_batch.json'))
    run_checked([args.official_python, driver, json.dumps(spec)], args.official_repo, 'the QC batch')
    official = dict(np.load(out))
    data = load_singletask_data(ENV_NAME, dataset_path=path, log=lambda *_: None).train
    if args.sparse:
        data = dict(data, rewards=sparse_rewards(data['rewards']))
    source = sampling.dataset_source({k: jnp.asarray(v) for k, v in data.items()})
    ours = sampling.sequences(source, jnp.asarray(official['starts']), args.horizon_length)
    discount = float(overrides.get('discount', importlib.import_module(f'flowrl.agents.{args.agent}').get_config().discount))
    differing = sequence_differences(official, ours, discount)
    crossing = int((official['valid'][:, -1] == 0).sum())
    if differing:
        sys.exit(f'flowrl\'s sequence batch differs from QC\'s sample_sequence at the same start rows in: {differing}')
    return f'{rows} sequences at the same start rows ({crossing} crossing an episode end): every field equal.'


def train_flowrl(args, path, overrides, workdir):
    """Per-seed curves and final evaluations, and the resolved config of flowrl's main.py (all seeds in one program)."""
    total = total_steps(args)
    flags = [f'--agent=agents/{args.agent}.py', f'--env_name={ENV_NAME}', f'--dataset_path={path}', '--seed=0',
             f'--num_seeds={args.seeds}', f'--offline_steps={args.offline_steps}',
             f'--online_steps={args.online_steps}', f'--balanced_sampling={args.balanced_sampling}',
             f'--buffer_size={args.buffer_size}', f'--log_interval={args.log_interval}',
             f'--eval_interval={total if args.eval_episodes else 0}', f'--eval_episodes={args.eval_episodes}',
             '--save_interval=0', f'--save_dir={workdir}', '--run_group=parity']
    if args.agent in CHUNKING_AGENTS:
        flags.append(f'--horizon_length={args.horizon_length}')
    if args.sparse:
        flags.append('--sparse=True')
    flags += [f'--agent.{k}={",".join(map(str, v)) if isinstance(v, tuple) else v}' for k, v in overrides.items()]
    print(f'flowrl {args.agent}, {args.seeds} seed(s) in one program ...', flush=True)
    run_checked([sys.executable, os.path.join(REPO, 'main.py'), *flags], REPO, 'flowrl main.py')
    (run_dir,) = glob.glob(os.path.join(workdir, 'parity', f'{args.agent}_*'))
    with open(os.path.join(run_dir, 'flags.json')) as f:
        config = json.load(f)['configs'][0]

    def rows_of(name):
        file = os.path.join(run_dir, name)
        if not os.path.exists(file):
            return []
        with open(file, newline='') as f:
            return list(csv.DictReader(f))

    rows = rows_of('train.csv')
    curves = [{int(r['step']): r for r in rows if int(r['member']) == m} for m in range(args.seeds)]
    evaluations = [{k: v for r in rows_of('eval.csv') if int(r['member']) == m and int(r['step']) == total
                    for k, v in r.items()} for m in range(args.seeds)]
    return curves, evaluations, config


def run_label(args):
    variant = ''.join(f'_{v}' for v in variant_overrides(args.agent, variant_args(args)).values())
    horizon = f'_h{args.horizon_length}' if args.agent in CHUNKING_AGENTS else ''
    return args.agent + variant + horizon + ('_online' if args.online_steps else '')


def variant_args(args) -> dict:
    return dict(actor_type=args.actor_type, actor_num_samples=args.actor_num_samples)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--agent', default='fql', choices=sorted(AGENTS))
    parser.add_argument('--official_repo', required=True, help='checkout of github.com/seohongpark/fql (acfql: github.com/ColinQiyangLi/qc)')
    parser.add_argument('--official_python', default=sys.executable,
                        help='python of a virtualenv where the official code imports (jax, flax, distrax, ogbench)')
    parser.add_argument('--seeds', type=int, default=3, help='seeds per program')
    parser.add_argument('--offline_steps', '--steps', type=int, default=3000, help='offline updates per seed')
    parser.add_argument('--online_steps', type=int, default=0, help='online steps after them (fql, sac)')
    parser.add_argument('--balanced_sampling', type=int, default=0, choices=(0, 1),
                        help='1: online batches half dataset, half online transitions (RLPD, with --agent sac)')
    parser.add_argument('--buffer_size', type=int, default=2_000_000, help='replay capacity of the online phase')
    parser.add_argument('--log_interval', type=int, default=250, help='updates per compared window')
    parser.add_argument('--eval_episodes', type=int, default=0,
                        help='evaluation episodes of the final policy per seed (0: none)')
    parser.add_argument('--hidden', default='128,128,128,128', help='hidden sizes of every MLP (paper: 512 x 4)')
    parser.add_argument('--batch_size', type=int, default=256)
    parser.add_argument('--set', action='append', metavar='KEY=JSON',
                        help="more config values for both programs, e.g. --set alpha=300 (default for fql: alpha=300, "
                             "cube-single's paper value)")
    parser.add_argument('--horizon_length', type=int, default=None,
                        help='H, both programs\' --horizon_length (acfql only; default 5, QC\'s main.py default)')
    parser.add_argument('--actor_type', default=None, choices=('distill-ddpg', 'best-of-n'),
                        help='acfql: distill-ddpg (QC-FQL, the default) or best-of-n (QC)')
    parser.add_argument('--actor_num_samples', type=int, default=None, help='acfql best-of-n: samples per decision (QC: 32)')
    parser.add_argument('--sparse', action='store_true', help='both programs\' --sparse (QC\'s flag; acfql)')
    parser.add_argument('--episodes', type=int, default=20, help='episodes of the generated dataset')
    parser.add_argument('--dataset_dir', default='~/.ogbench/data', help='where the reduced dataset is kept')
    parser.add_argument('--workers', type=int, default=2, help='worker processes for dataset generation')
    parser.add_argument('--out_dir', default=None, help='also write parity_<agent>[_online].json and .md here')
    args = parser.parse_args(argv)
    if args.agent == 'fql' and not any(s.startswith('alpha=') for s in args.set or []):
        args.set = [*(args.set or []), 'alpha=300']
    if total_steps(args) % args.log_interval or args.seeds < 2:
        sys.exit('The steps must be a multiple of --log_interval, and --seeds at least 2 (seed noise needs two).')
    if args.online_steps and args.agent not in ONLINE_AGENTS:
        sys.exit(f'Online parity is for {", ".join(ONLINE_AGENTS)} (the FQL README\'s online commands).')
    if not os.path.isfile(os.path.join(args.official_repo, 'agents', f'{args.agent}.py')):
        sys.exit(f'{args.official_repo} is not a checkout of {REPOSITORIES[args.agent]} (no agents/{args.agent}.py).')
    if args.sparse and args.agent not in CHUNKING_AGENTS:
        sys.exit('--sparse is a flag of the Q-chunking code: use it with --agent acfql.')
    if args.online_steps and args.agent in CHUNKING_AGENTS:
        sys.exit('Parity with the Q-chunking code is offline only for now: use --online_steps 0.')
    try:
        args.horizon_length = horizon_of(args.agent, args.horizon_length)
        variants = variant_overrides(args.agent, variant_args(args))
    except ValueError as error:
        sys.exit(str(error))

    path = dataset_file(args.dataset_dir, args.episodes, args.workers)
    overrides = {**overrides_from(args), **variants}
    with tempfile.TemporaryDirectory(prefix='parity_') as workdir:
        batch_check = check_sequence_batch(args, path, overrides, workdir) if args.agent in CHUNKING_AGENTS else None
        official_curves, official_eval, official_config, action_dim = train_official(args, path, overrides, workdir)
        flowrl_curves, flowrl_eval, flowrl_config = train_flowrl(args, path, overrides, workdir)
    flowrl_config = resolved_flowrl_config(args.agent, flowrl_config, action_dim)
    shared, differing, only_official = compare_configs(official_config, flowrl_config)
    if differing:
        sys.exit(f'The two programs were not configured alike (official, flowrl): {differing}')
    conflicts = official_only_conflicts(args.agent, official_config)
    if conflicts:
        sys.exit(f'The official config asks for what flowrl\'s agent does not do (official, flowrl\'s behaviour): {conflicts}')
    steps = list(range(args.log_interval, total_steps(args) + 1, args.log_interval))
    metrics = AGENTS[args.agent] + (EXPLORATION if args.online_steps else ())
    table = compare(official_curves, flowrl_curves, steps, metrics, action_dim)
    if args.eval_episodes:
        last = steps[-1]
        table.update(compare([{last: e} for e in official_eval], [{last: e} for e in flowrl_eval], [last],
                             EVALUATION, action_dim))
    online = (f', then {args.online_steps} online steps (balanced_sampling={args.balanced_sampling})'
              if args.online_steps else '')
    variant = ''.join(f', {k}={v}' for k, v in variants.items())
    chunks = f' (horizon_length={args.horizon_length}{variant}{", sparse" if args.sparse else ""})' \
        if args.agent in CHUNKING_AGENTS else ''
    header = [f'{args.agent}{chunks} parity on {DATASET} ({args.episodes} generated episodes, {path}): {args.seeds} seeds per '
              f'program, {args.offline_steps} offline updates{online}, window means over {args.log_interval} updates.',
              'Networks smaller than the paper\'s 4 x 512 (CPU-sized): ' + args.hidden + '.',
              'Config keys both programs have (checked equal): ' + ', '.join(f'{k}={v}' for k, v in shared.items()) + '.',
              'Official keys flowrl lacks: ' + (', '.join(only_official) or 'none') + '.',
              *(['QC\'s sample_sequence against flowrl\'s sampler: ' + batch_check] if batch_check else []),
              'Not compared (a name the two codes use for different quantities): '
              + ('; '.join(f'{k}: {why}' for k, why in NOT_COMPARABLE.get(args.agent, {}).items()) or 'none') + '.']
    text, verdict = markdown(table, header)
    text += f'\n\nAt the last compared log step, mean ± std over seeds:\n\n' + final_table(table)
    print(text)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, f'parity_{run_label(args)}.md'), 'w') as f:
            f.write(text + '\n')
        with open(os.path.join(args.out_dir, f'parity_{run_label(args)}.json'), 'w') as f:
            json.dump(dict(config=shared, args=vars(args), table=table, official=official_curves,
                           flowrl=flowrl_curves, official_evaluation=official_eval, flowrl_evaluation=flowrl_eval),
                      f, indent=1, default=float)
    return 0 if verdict else 1


if __name__ == '__main__':
    sys.exit(main())
