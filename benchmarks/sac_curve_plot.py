"""SAC's learning curve while it made a locomotion dataset, beside a published SAC HalfCheetah curve.

    python benchmarks/sac_curve_plot.py ~/.minari/datasets/flowrl/halfcheetah/sac_curve.csv --out docs/sac_halfcheetah_curve.png

Ours: `sac_curve.csv` of `python -m flowrl.suites.data locomotion halfcheetah` (the policy's mode, mean
over the evaluation episodes; and the training episodes' return, the policy's samples). Published:
docs/sac_halfcheetah_tianshou.csv, Tianshou's SAC on HalfCheetah-v3 (deterministic test return,
mean ± std over 10 seeds; its source is in the file's header).
"""

import argparse
import csv
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PUBLISHED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs',
                         'sac_halfcheetah_tianshou.csv')


def read_rows(path: str) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith('#')))


def column(rows, key) -> np.ndarray:
    return np.asarray([float(r[key]) if r[key] not in ('', None) else np.nan for r in rows])


def plot(ours_path: str, out: str, published_path: str = PUBLISHED) -> None:
    ours, published = read_rows(ours_path), read_rows(published_path)
    steps = column(ours, 'env_step')
    figure, axis = plt.subplots(figsize=(7, 4.2))
    axis.plot(steps, column(ours, 'eval_return'), 'o-', ms=3, label='flowrl SAC, HalfCheetah-v4: evaluation (mode)')
    axis.plot(steps, column(ours, 'train_return'), '.', alpha=0.6, label='flowrl SAC: training episodes (samples)')
    reference = column(published, 'env_step') <= steps.max()
    x = column(published, 'env_step')[reference]
    mean, std = column(published, 'return_mean')[reference], column(published, 'return_std')[reference]
    axis.plot(x, mean, '-', color='gray', label='Tianshou SAC, HalfCheetah-v3: test return, 10 seeds')
    axis.fill_between(x, mean - std, mean + std, color='gray', alpha=0.2)
    axis.set_xlabel('environment steps')
    axis.set_ylabel('episode return')
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc='upper left')
    figure.tight_layout()
    figure.savefig(out, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('curve', help="sac_curve.csv written by 'python -m flowrl.suites.data locomotion'")
    parser.add_argument('--out', default='docs/sac_halfcheetah_curve.png')
    args = parser.parse_args()
    plot(args.curve, args.out)
    print(f'Written: {args.out}')


if __name__ == '__main__':
    main()
