"""A run's final scores: the one rule (the FQL paper's: the mean score of the last three
evaluations; a diverged or never evaluated member has none), the per-member and per-sweep-point
summary written to results.json (flowrl.run.runner) and its lines in the log. The report
(flowrl.results.report) scores members by the same rule."""

import numpy as np

from flowrl import run_files
from flowrl.suites import METRICS

FINAL_EVALUATIONS = 3  # evaluations the final score averages


def final_score(score_history) -> float:
    """The FQL paper's score: mean score of the last FINAL_EVALUATIONS evaluations (NaN without any)."""
    return float(np.mean(score_history[-FINAL_EVALUATIONS:])) if len(score_history) else float('nan')


def member_score(score_history, diverged: bool) -> float | None:
    """A member's final score; None for a member that diverged or was never evaluated."""
    return None if diverged or not len(score_history) else final_score(score_history)


MEMBER_RESULT_KEYS = ('member', 'seed', 'final_score', 'evaluations', 'diverged_at_update', 'diverged_metrics')


def summarize_results(eval_rows: list[dict], labels: list[dict], diverged: dict | None = None,
                      metric: str = 'success') -> dict:
    """Per-member final score (mean score of the last 3 evaluations, `metric` naming what the score
    measures; None without evaluations or for a member that diverged, which gets the update and
    metrics instead) and, per sweep point, mean and std over the seeds that did not diverge and how
    many did."""
    diverged = diverged or {}
    members = []
    for label in labels:
        rows = sorted((r for r in eval_rows if int(r['member']) == label['member']), key=lambda r: int(r['step']))
        history = [run_files.row_score(r) for r in rows]
        members.append(dict(**label, final_score=member_score(history, label['member'] in diverged), **diverged.get(label['member'], {}),
                            evaluations=[dict(step=int(r['step']), score=run_files.row_score(r), success=float(r['success']),
                                              episode_return=float(r['episode_return'])) for r in rows]))
    groups = {}
    for member in members:
        point = tuple((k, v) for k, v in member.items() if k not in MEMBER_RESULT_KEYS)
        groups.setdefault(point, []).append(member)
    aggregate = []
    for point, group in groups.items():
        scores = [m['final_score'] for m in group if m['final_score'] is not None]
        aggregate.append(dict(**dict(point), num_seeds=len(scores),
                              diverged=sum('diverged_at_update' in m for m in group),
                              mean=float(np.mean(scores)) if scores else None,
                              std=float(np.std(scores)) if scores else None))
    return dict(score=f'mean {metric} of the last {FINAL_EVALUATIONS} evaluations', metric=metric, members=members, aggregate=aggregate)


def results_lines(results: dict) -> list[str]:
    unit = METRICS[results.get('metric', 'success')].unit  # runs written before results.json named it scored success
    lines = [f'Final score ({results["score"]}, x 100):']
    for m in results['members']:
        extra = ' '.join(f'{k}={v}' for k, v in m.items() if k not in MEMBER_RESULT_KEYS)
        if 'diverged_at_update' in m:
            outcome = f'diverged at update {m["diverged_at_update"]} ({", ".join(m["diverged_metrics"])})'
        else:
            outcome = 'not evaluated' if m['final_score'] is None else f'{100 * m["final_score"]:.1f}{unit}'
        lines.append(f'  seed {m["seed"]} {extra}: {outcome}')
    for a in results['aggregate']:
        extra = ' '.join(f'{k}={v}' for k, v in a.items() if k not in ('num_seeds', 'diverged', 'mean', 'std'))
        score = 'no score' if a['mean'] is None else f'{100 * a["mean"]:.1f} ± {100 * a["std"]:.1f}{unit}'
        diverged = f', {a["diverged"]} diverged' if a.get('diverged') else ''
        lines.append(f'  {extra or "all"}: {score} over {a["num_seeds"]} seed(s){diverged}')
    return lines
