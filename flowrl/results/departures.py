"""Where a run departs from the protocol behind a published number (flowrl.results.published.Protocol):
what the run recorded in flags.json (its settings, its agent config, the data record and the
task description) against what the source trained and evaluated with.

    recorded_protocol(flags, config) -> Recorded
    departures(recorded, protocol, family) -> ['100k of 1M updates', 'networks 2×128 (paper 4×512)', ...]
    departures_text(texts, protocol) -> one cell of the report

Each check compares one part of the protocol and stays silent where either side does not say
(a source that gives no evaluation count, a run recorded before flowrl kept dataset sizes).
"""

import dataclasses

from flowrl.results.published import Protocol, full_dataset_episodes

HIDDEN_DIMS_SUFFIX = '_hidden_dims'  # the agent config keys of MLP sizes, whatever the agent calls its networks
AS_PUBLISHED = 'as published'
NOT_PUBLISHED = 'protocol not published'
WHEN = dict(pre='before', post='after')


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What a run recorded about how it trained and evaluated; None where it did not record it."""
    offline_updates: int | None
    online_steps: int | None
    networks: tuple  # ((config key, hidden dims), ...)
    dataset_episodes: int | None  # episodes of the training data (episode ends in it)
    dataset_transitions: int | None
    reduced_dataset: bool  # built with --dataset_episodes
    eval_episodes: int | None
    eval_interval: int | None
    success_timing: str | None  # OGBench only

    def grouping_values(self) -> dict:
        """The recorded values that runs pooled into one score must share, by the names of the
        flags that set them (the agent config holds the networks; flowrl.results.report adds the success
        timing)."""
        return dict(offline_steps=self.offline_updates, online_steps=self.online_steps,
                    dataset_episodes=self.dataset_episodes, eval_episodes=self.eval_episodes,
                    eval_interval=self.eval_interval)


def network_sizes(config: dict) -> tuple:
    """((key, hidden dims), ...) of every `*_hidden_dims` key of an agent config."""
    return tuple((key, tuple(value)) for key, value in sorted(config.items())
                 if key.endswith(HIDDEN_DIMS_SUFFIX) and value is not None)


def recorded_protocol(flags: dict, config: dict) -> Recorded:
    """The protocol of one member: `flags` is the run's flags.json, `config` the member's agent config."""
    settings = flags.get('settings') or {}
    data = flags.get('data') or {}
    reduced = settings.get('dataset_episodes')
    return Recorded(
        offline_updates=settings.get('offline_steps'), online_steps=settings.get('online_steps'),
        networks=network_sizes(config),
        # Runs recorded before the data record held sizes: the reduced dataset's size, if one was asked for.
        dataset_episodes=data.get('episodes', reduced), dataset_transitions=data.get('transitions'),
        reduced_dataset=reduced is not None,
        eval_episodes=settings.get('eval_episodes'), eval_interval=settings.get('eval_interval'),
        success_timing=flags.get('success_timing', settings.get('success_timing')))


def count_text(n: int) -> str:
    """1000000 -> '1M', 1500000 -> '1.5M', 60000 -> '60k', 1234 -> '1,234'."""
    if n >= 1_000_000 and n % 100_000 == 0:
        return f'{n / 1_000_000:g}M'
    if n >= 1_000 and n % 1_000 == 0:
        return f'{n // 1_000}k'
    return f'{n:,}'


def dims_text(dims: tuple) -> str:
    """(512, 512, 512, 512) -> '4×512'; (256, 128) -> '256-128'; () -> 'no hidden layer'."""
    if not dims:
        return 'no hidden layer'
    return f'{len(dims)}×{dims[0]}' if len(set(dims)) == 1 else '-'.join(map(str, dims))


def _both(run_value, paper_value) -> bool:
    return run_value is not None and paper_value is not None


def _updates(run: Recorded, paper: Protocol, family: str) -> list:
    texts = []
    if _both(run.offline_updates, paper.offline_updates) and run.offline_updates != paper.offline_updates:
        texts.append(f'{count_text(run.offline_updates)} of {count_text(paper.offline_updates)} updates')
    if _both(run.online_steps, paper.online_steps) and run.online_steps != paper.online_steps:
        theirs = 'offline only' if paper.online_steps == 0 else count_text(paper.online_steps)
        texts.append(f'{count_text(run.online_steps)} online steps (paper {theirs})')
    return texts


def _networks(run: Recorded, paper: Protocol, family: str) -> list:
    if paper.hidden_dims is None or not run.networks:
        return []
    theirs = tuple(paper.hidden_dims)
    differing = [(key, dims) for key, dims in run.networks if dims != theirs]
    if not differing:
        return []
    if len(differing) == len(run.networks) and len({dims for _, dims in differing}) == 1:
        return [f'networks {dims_text(differing[0][1])} (paper {dims_text(theirs)})']
    mine = ', '.join(f'{key.removesuffix(HIDDEN_DIMS_SUFFIX)} networks {dims_text(dims)}' for key, dims in differing)
    return [f'{mine} (paper {dims_text(theirs)})']


def _dataset(run: Recorded, paper: Protocol, family: str) -> list:
    if paper.dataset is None:
        return []
    full = full_dataset_episodes(family)
    if full is not None and run.dataset_episodes is not None:
        departs, theirs = run.dataset_episodes != full, f'{full:,} episodes'
    else:  # the published size is not known here, or the run did not record its own: a reduced dataset departs
        departs, theirs = run.reduced_dataset, paper.dataset
    if not departs:
        return []
    size = 'of unrecorded size' if run.dataset_episodes is None else f'{run.dataset_episodes:,} episodes'
    if run.dataset_transitions is not None:
        size += f', {run.dataset_transitions:,} transitions'
    return [f'dataset {size} (paper {theirs})']


def _evaluation(run: Recorded, paper: Protocol, family: str) -> list:
    texts = []
    if _both(run.eval_episodes, paper.eval_episodes) and run.eval_episodes != paper.eval_episodes:
        texts.append(f'{run.eval_episodes} evaluation episodes (paper {paper.eval_episodes})')
    if _both(run.eval_interval, paper.eval_interval) and run.eval_interval != paper.eval_interval:
        mine = 'no evaluation' if run.eval_interval == 0 else f'evaluated every {count_text(run.eval_interval)} updates'
        texts.append(f'{mine} (paper every {count_text(paper.eval_interval)})')
    return texts


def _success_timing(run: Recorded, paper: Protocol, family: str) -> list:
    if not _both(run.success_timing, paper.success_timing) or run.success_timing == paper.success_timing:
        return []
    return [f'success counted {WHEN[run.success_timing]} the step (paper {WHEN[paper.success_timing]})']


CHECKS = (_updates, _networks, _dataset, _evaluation, _success_timing)


def departures(run: Recorded, paper: Protocol, family: str) -> list:
    """One phrase per part of `paper` that the run did otherwise, in the order of CHECKS."""
    return [text for check in CHECKS for text in check(run, paper, family)]


def departures_text(texts: list, paper: Protocol) -> str:
    if not paper.known:
        return NOT_PUBLISHED
    return '; '.join(texts) or AS_PUBLISHED


def protocol_text(paper: Protocol) -> str:
    """The protocol in words, for the report's note on its source."""
    if not paper.known:
        return 'gives no training protocol (updates, network sizes, evaluation episodes) to compare runs with'
    parts = []
    if paper.offline_updates is not None:
        online = '' if not paper.online_steps else f' then {count_text(paper.online_steps)} online steps'
        parts.append(f'{count_text(paper.offline_updates)} offline updates{online}')
    if paper.hidden_dims is not None:
        parts.append(f'every MLP {dims_text(tuple(paper.hidden_dims))}')
    if paper.dataset is not None:
        parts.append(paper.dataset)
    if paper.eval_interval is not None and paper.eval_episodes is not None:
        parts.append(f'evaluation every {count_text(paper.eval_interval)} updates on {paper.eval_episodes} episodes, '
                     'score = mean of the last three')
    if paper.success_timing is not None:
        parts.append(f'success counted {WHEN[paper.success_timing]} the step')
    return ', '.join(parts)
