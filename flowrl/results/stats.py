"""Scores over seeds the way RL papers now report them (Agarwal et al. 2021, "Deep RL at the
edge of the statistical precipice"): the interquartile mean (IQM) and percentile confidence
intervals from a stratified bootstrap.

Written in numpy rather than taken from `rliable`: its last release is years old and it pulls
in arch and seaborn, for two short functions whose definitions are followed here exactly:
- IQM: the mean of the middle 50 % of the scores (scipy.stats.trim_mean(x, 0.25) on all
  scores pooled);
- stratified bootstrap: resample runs with replacement *within* each task (stratum), pool the
  resample, apply the statistic; the interval is the percentile interval of the replicates.
  With one task it is the ordinary bootstrap over seeds.
"""

import numpy as np


def iqm(scores) -> float:
    """Interquartile mean: drop the lowest and highest int(0.25 n) scores, average the rest."""
    x = np.sort(np.asarray(scores, float).ravel())
    cut = int(0.25 * x.size)
    return float(np.mean(x[cut:x.size - cut]))


def _iqm_rows(samples: np.ndarray) -> np.ndarray:
    """IQM of each row of [replicates, n] (vectorised `iqm`)."""
    x = np.sort(samples, axis=1)
    cut = int(0.25 * x.shape[1])
    return x[:, cut:x.shape[1] - cut].mean(axis=1)


def stratified_bootstrap(scores_per_task, reps: int = 2000, seed: int = 0) -> np.ndarray:
    """[reps, total runs]: each row resamples every task's runs with replacement, within the task."""
    rng = np.random.default_rng(seed)
    parts = []
    for scores in scores_per_task:
        scores = np.asarray(scores, float).ravel()
        parts.append(scores[rng.integers(0, scores.size, size=(reps, scores.size))])
    return np.concatenate(parts, axis=1)


def stratified_bootstrap_ci(scores_per_task, statistic='iqm', reps: int = 2000, confidence: float = 0.95,
                            seed: int = 0) -> tuple:
    """(low, high): the percentile interval of `statistic` ('iqm' or 'mean') over stratified
    bootstrap replicates of `scores_per_task` (a list of per-task score arrays, one per stratum)."""
    samples = stratified_bootstrap(scores_per_task, reps, seed)
    values = _iqm_rows(samples) if statistic == 'iqm' else samples.mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def mean_ci_per_step(curves: np.ndarray, reps: int = 1000, confidence: float = 0.95, seed: int = 0):
    """Bootstrap interval of the mean over seeds at every step: curves [seeds, steps] -> (low, high)."""
    curves = np.asarray(curves, float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, curves.shape[0], size=(reps, curves.shape[0]))
    means = curves[picks].mean(axis=1)  # [reps, steps]
    tail = 100 * (1 - confidence) / 2
    return np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)
