"""Single-variable power laws: the VAR form L = (beta X)^alpha and the offset form
L = E + (x0 / x)^alpha.

- VAR form (Tian et al. 2024, section 5.2): a straight line in log-log space,
  log L = alpha log X + alpha log beta, fitted by least squares. The paper reports X in units
  (N in billions of parameters, C in PFLOP); `x_unit_scale` divides x to get those units so the
  fitted beta is comparable with its numbers (e.g. L_last = (2.0 N)^-0.23). The paper plots the
  reducible loss; `irreducible` subtracts a known constant first (then E = irreducible).
- Offset form (Henighan et al. 2020): E is the irreducible loss, bounded to [0, min L). For a
  fixed E the model is linear in log space, so E is profiled on a grid first and then all three
  parameters are polished together with bounded least squares on log L.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import optimize

from analysis.errors import DataError, FitError
from analysis.inputs import clean_inputs, require_positive

BILLION = 1e9  # the VAR paper's unit for N
PFLOP = 1e15  # the VAR paper's unit for C
FORMS = ("var", "offset")


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted power law. `predict` takes x in the caller's original units (x_unit_scale is applied
    inside). For form "var": y = E + (beta * x / x_unit_scale)^alpha with E = `irreducible` (0 by
    default), alpha < 0 for a falling loss. For form "offset": y = E + (x0 / (x / x_unit_scale))^alpha
    with alpha > 0 (Henighan's sign convention); `beta` is then None."""

    form: str
    alpha: float
    beta: float | None
    x0: float | None
    E: float
    r: float  # Pearson r of (log X, log(y - E)): the straightness of the law in log-log space
    rmse_log: float  # root mean squared residual of log y
    n_points: int
    converged: bool
    status: str
    x_unit_scale: float
    x_unit: str
    options: dict = field(default_factory=dict)

    def predict(self, x) -> np.ndarray:
        scaled = np.asarray(x, dtype=float) / self.x_unit_scale
        if self.form == "var":
            return self.E + (self.beta * scaled) ** self.alpha
        return self.E + (self.x0 / scaled) ** self.alpha

    def inverse(self, y) -> np.ndarray:
        """The x (original units) at which the law reaches y: 'how big / how much compute for loss y'."""
        reducible = np.asarray(y, dtype=float) - self.E
        if np.any(reducible <= 0):
            raise DataError(f"target values must exceed the irreducible term E={self.E:.6g}; got {y!r}")
        if self.form == "var":
            return reducible ** (1.0 / self.alpha) / self.beta * self.x_unit_scale
        return self.x0 / reducible ** (1.0 / self.alpha) * self.x_unit_scale

    def law(self, y_name: str = "L", x_name: str = "X") -> str:
        """The law as text for legends and tables, e.g. 'L = (2.00 X)^-0.230'."""
        unit = f" [{self.x_unit}]" if self.x_unit else ""
        offset = f"{self.E:.3g} + " if self.E else ""
        if self.form == "var":
            return f"{y_name} = {offset}({self.beta:.3g} {x_name}{unit})^{self.alpha:.3g}"
        return f"{y_name} = {offset}({self.x0:.3g} / {x_name}{unit})^{self.alpha:.3g}"

    def parameters(self) -> dict[str, float]:
        names = ("alpha", "beta", "r") if self.form == "var" else ("alpha", "x0", "E", "r")
        return {name: float(getattr(self, name)) for name in names}

    def to_dict(self) -> dict:
        return asdict(self)


def fit_power_law(
    x,
    y,
    form: str = "var",
    x_unit_scale: float = 1.0,
    x_unit: str = "",
    irreducible: float = 0.0,
    n_profile_points: int = 200,
) -> PowerLawFit:
    """Fits y against x with the VAR form (log-log least squares) or the offset form.

    x, y: 1-D arrays of positive values, one point per trial (or per frontier point).
    x_unit_scale: x is divided by it before fitting (BILLION for N, PFLOP for C as in the paper).
    irreducible: VAR form only; a known constant subtracted from y (the paper's reducible loss).
    n_profile_points: offset form only; grid size of the profile over E used to start the fit.
    """
    if form not in FORMS:
        raise FitError(f"form must be one of {FORMS}, got {form!r}")
    if not (np.isfinite(x_unit_scale) and x_unit_scale > 0):
        raise FitError(f"x_unit_scale must be a positive finite number, got {x_unit_scale!r}")
    n_parameters = 2 if form == "var" else 3
    x_array, y_array = clean_inputs(
        ("x", "y"), x, y, positive=True, n_parameters=n_parameters, fit_name=f"{form}-form power law"
    )
    if np.ptp(x_array) == 0:
        raise FitError("all x values are equal; a power law needs at least two distinct x values")
    if np.ptp(y_array) == 0:
        # e.g. samples at a floor: every trial scores the same (a precision of 1, gap 0, is
        # refused above as not positive)
        raise FitError(f"all y values are equal ({y_array[0]:.6g}); this metric shows no trend to fit")
    distinct = int(np.unique(x_array).size)
    if distinct <= n_parameters:
        # With no degree of freedom left the law passes through every point: r = +-1, a
        # zero-width bootstrap interval and a meaningless holdout, all shown as if certain (a
        # probe's study with two usable trials printed r 1.0000). Refuse instead.
        raise FitError(
            f"{form}-form power law has {n_parameters} free parameters but only {distinct} distinct x values: "
            f"no degree of freedom is left, so it would pass through every point (r = +-1, no uncertainty); "
            f"give at least {n_parameters + 1}"
        )
    scaled_x = x_array / x_unit_scale
    options = {"form": form, "x_unit_scale": x_unit_scale, "irreducible": irreducible}
    if form == "var":
        return _fit_var_form(scaled_x, y_array, x_unit_scale, x_unit, irreducible, options)
    if irreducible:
        raise FitError("irreducible applies to the VAR form only; the offset form fits E itself")
    options["n_profile_points"] = n_profile_points
    return _fit_offset_form(scaled_x, y_array, x_unit_scale, x_unit, n_profile_points, options)


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of two 1-D arrays of 3+ points, neither constant: scipy.stats.pearsonr's own
    arithmetic (centre, scale by the largest deviation before the norm, dot of the unit vectors,
    clip), so r is bit for bit what pearsonr returns, without its p-value: that p-value made r
    60% of a power-law fit's time, and bootstraps refit thousands of times."""
    x_centred, y_centred = x - np.mean(x, keepdims=True), y - np.mean(y, keepdims=True)
    x_scale, y_scale = np.max(np.abs(x_centred), keepdims=True), np.max(np.abs(y_centred), keepdims=True)
    x_norm = x_scale * np.linalg.norm(x_centred / x_scale, axis=-1, keepdims=True)
    y_norm = y_scale * np.linalg.norm(y_centred / y_scale, axis=-1, keepdims=True)
    return float(np.clip(np.vecdot(x_centred / x_norm, y_centred / y_norm, axis=-1), -1.0, 1.0))


def _fit_var_form(scaled_x, y, x_unit_scale, x_unit, irreducible, options) -> PowerLawFit:
    reducible = y - irreducible
    require_positive(("y - irreducible",), (reducible,), "the log-log VAR-form fit")
    log_x, log_y = np.log(scaled_x), np.log(reducible)
    slope, intercept = np.polyfit(log_x, log_y, 1)
    # log L = alpha log X + alpha log beta  =>  beta = exp(intercept / alpha)
    if slope == 0:
        raise FitError("fitted slope is exactly 0: y does not vary with x, beta is undefined")
    with np.errstate(over="ignore"):
        beta = float(np.exp(intercept / slope))
    if not np.isfinite(beta) or beta == 0:
        raise FitError(
            f"fitted slope {slope:.3g} is ~0 (y barely varies with x): beta = exp(intercept/slope) "
            "is not representable; this metric shows no power-law trend"
        )
    residual = log_y - (slope * log_x + intercept)
    r = pearson_r(log_x, log_y) if len(log_x) > 2 else float(np.sign(slope))
    return PowerLawFit(
        form="var",
        alpha=float(slope),
        beta=beta,
        x0=None,
        E=float(irreducible),
        r=r,
        rmse_log=float(np.sqrt(np.mean(residual**2))),
        n_points=len(y),
        converged=True,
        status="closed-form least squares",
        x_unit_scale=x_unit_scale,
        x_unit=x_unit,
        options=options,
    )


# The offset form's smallest exponent (its optimiser's lower bound).
MINIMUM_OFFSET_ALPHA = 1e-9


def _offset_log_residual(params, log_x, log_y):
    E, alpha, log_x0 = params
    return np.log(E + np.exp(alpha * (log_x0 - log_x))) - log_y


def _fit_offset_form(scaled_x, y, x_unit_scale, x_unit, n_profile_points, options) -> PowerLawFit:
    log_x, log_y = np.log(scaled_x), np.log(y)
    upper_E = float(y.min()) * (1 - 1e-9)
    # Profile: for each candidate E, log(y - E) is linear in log x; keep the E whose full
    # prediction best matches log y. This gives the bounded optimiser a start in the right basin.
    best = None
    for E in np.linspace(0.0, upper_E, n_profile_points, endpoint=False):
        slope, intercept = np.polyfit(log_x, np.log(y - E), 1)
        alpha = -slope
        if alpha <= MINIMUM_OFFSET_ALPHA:  # rounding noise of a flat y: outside the optimiser's bounds
            continue
        params = np.array([E, alpha, intercept / alpha])
        loss = float(np.sum(_offset_log_residual(params, log_x, log_y) ** 2))
        if best is None or loss < best[0]:
            best = (loss, params)
    if best is None:
        raise FitError("y does not decrease with x for any offset E in [0, min y): no offset power law fits")
    solution = optimize.least_squares(
        _offset_log_residual,
        best[1],
        args=(log_x, log_y),
        bounds=([0.0, MINIMUM_OFFSET_ALPHA, -np.inf], [upper_E, np.inf, np.inf]),
        x_scale="jac",
        xtol=1e-14,
        ftol=1e-14,
        gtol=1e-14,
        max_nfev=5000,
    )
    E, alpha, log_x0 = (float(value) for value in solution.x)
    reducible = y - E
    r = pearson_r(log_x, np.log(reducible)) if len(y) > 2 else -1.0
    status = solution.message
    if E <= 0.0 or E >= upper_E * (1 - 1e-6):
        status += f"; E={E:.6g} lies on its bound [0, min y): the offset is not identified"
    return PowerLawFit(
        form="offset",
        alpha=alpha,
        beta=None,
        x0=float(np.exp(log_x0)),
        E=E,
        r=r,
        rmse_log=float(np.sqrt(np.mean(solution.fun**2))),
        n_points=len(y),
        converged=bool(solution.success),
        status=status,
        x_unit_scale=x_unit_scale,
        x_unit=x_unit,
        options=options,
    )
