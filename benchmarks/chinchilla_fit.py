"""Benchmark: the Chinchilla L(N, D) fit on the replication's reference data, full 4,500-start grid.

    python benchmarks/chinchilla_fit.py                 # full grid + 4,000 bootstrap resamples
    python benchmarks/chinchilla_fit.py --bootstrap 1000 --seed 1

Prints the grid's wall time, the estimate beside the published one (Besiroglu et al. 2024,
arXiv 2404.10102), the convergence report, bootstrap 95% intervals beside the published ones, and
the compute-optimal allocation at Chinchilla's budget (5.76e23 FLOPs). Data: tests/data/
chinchilla_epoch_extracted.csv (provenance in tests/data/README.md); the 5 highest losses are dropped
and D = C / (6 N), as in the replication.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # runnable from a checkout without installing

from analysis import bootstrap_chinchilla, compute_optimal_allocation, fit_chinchilla  # noqa: E402

REFERENCE_CSV = REPO_ROOT / "tests" / "data" / "chinchilla_epoch_extracted.csv"
PUBLISHED = {"A": 477.8, "B": 2143.9, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}
PUBLISHED_INTERVALS = {"E": (1.769, 1.871), "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}
CHINCHILLA_COMPUTE = 5.76e23


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", type=int, default=4000, help="bootstrap resamples (published: 4,000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not REFERENCE_CSV.exists():
        print(f"reference data not found at {REFERENCE_CSV}", file=sys.stderr)
        return 1
    frame = pd.read_csv(REFERENCE_CSV).sort_values("loss").iloc[:-5]
    N = frame["Model Size"].to_numpy()
    D = frame["Training FLOP"].to_numpy() / (6 * N)
    loss = frame["loss"].to_numpy()

    start = time.perf_counter()
    fit = fit_chinchilla(N, D, loss)
    grid_seconds = time.perf_counter() - start
    print(f"full grid: {fit.n_starts} starts, {len(loss)} points, wall time {grid_seconds:.2f} s")
    print(
        f"converged starts: {fit.n_starts_converged}/{fit.n_starts}; starts reaching the best objective: "
        f"{fit.n_starts_at_best}; status: {fit.status}"
    )
    print(f"warnings: {list(fit.warnings) or 'none'}")
    print(f"objective (summed Huber): {fit.objective:.6e}   published 1.01827e-03")
    print(f"{'parameter':<10}{'measured':>12}{'published':>12}")
    for name, published in PUBLISHED.items():
        print(f"{name:<10}{getattr(fit, name):>12.4f}{published:>12.4f}")

    start = time.perf_counter()
    result = bootstrap_chinchilla(
        N,
        D,
        loss,
        fit=fit,
        n_resamples=args.bootstrap,
        seed=args.seed,
        derived=lambda f: {
            "N_opt": float(compute_optimal_allocation(f, CHINCHILLA_COMPUTE).N_opt),
            "tokens_per_parameter": float(compute_optimal_allocation(f, CHINCHILLA_COMPUTE).tokens_per_parameter),
        },
    )
    bootstrap_seconds = time.perf_counter() - start
    print(
        f"\nbootstrap: {args.bootstrap} resamples of the 240 runs (seed {args.seed}), "
        f"{result.n_failed} failed, wall time {bootstrap_seconds:.2f} s"
    )
    print(f"{'parameter':<22}{'95% interval':>26}{'published':>22}")
    for name, (low, high) in result.intervals.items():
        published = PUBLISHED_INTERVALS.get(name)
        published_text = f"({published[0]:.3f}, {published[1]:.3f})" if published else ""
        print(f"{name:<22}{f'({low:.4g}, {high:.4g})':>26}{published_text:>22}")
    allocation = compute_optimal_allocation(fit, CHINCHILLA_COMPUTE)
    print(
        f"\nat C = {CHINCHILLA_COMPUTE:.3g} FLOPs: N_opt = {float(allocation.N_opt):.3g}, "
        f"D_opt = {float(allocation.D_opt):.3g}, D/N = {float(allocation.tokens_per_parameter):.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
