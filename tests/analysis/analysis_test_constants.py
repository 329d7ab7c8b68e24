"""Shared constants for the analysis tests (kept out of conftest so tests can import them)."""

from analysis import StartGrid

# A 32-start subset of the full grid whose cells include the optimum's basin: the full 4,500-start
# grid runs in benchmarks/chinchilla_fit.py and in the slow test.
REDUCED_GRID = StartGrid(
    alpha_values=(0.0, 0.5), beta_values=(0.0, 0.5), e_values=(0.5, 1.0), a_values=(5.0, 10.0), b_values=(5.0, 10.0)
)
