"""A four-state Gaussian HMM of the benchmark, fitted per cut-off, read as filtered probabilities.

Inputs (:func:`regime_inputs`): per session the benchmark's daily log return and its annualised
realised volatility over ``realized_vol_window`` sessions, both window-exact, so a row is a pure
function of the closes in its window.

Fit (:func:`fit_regime_model`): only sessions strictly before the cut-off, standardised with
their own mean and standard deviation, ``restarts`` seeded EM runs, the best log-likelihood
kept. Too little history or no converged restart gives a ``"fallback"`` fit (the caller then
uses :mod:`quant_assets.regimes.rules`); it never raises for those.

Labels (:func:`label_states`): hidden states are arbitrary indices that change from one refit to
the next, so each state is named from its own mean return and volatility by a fixed rule.

Reading (:func:`filtered_probabilities`, :func:`hmm_regimes`): the forward recursion only, so the
probability at date D uses observations up to and including D. hmmlearn's ``predict_proba`` is
the *smoothed* posterior, which also uses every later observation (look-ahead); it is exposed as
:func:`smoothed_probabilities` only to demonstrate the difference.

Bit-exactness: the emission densities and the recursion below use only element-wise
arithmetic over rows and fixed-shape (states-sized) operations per row, never a matrix product
across rows whose BLAS blocking could depend on how many rows were passed. So a date's filtered
probabilities are identical whether a caller passes one month or the whole window.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from quant_assets.features.rolling import rolling_std
from quant_assets.names import REGIME_NAMES, REGIME_PROB_COLUMNS, SESSIONS_PER_YEAR
from quant_assets.settings import RegimeSettings

if TYPE_CHECKING:  # hmmlearn (and scikit-learn, ~1.2 s) is imported when a model is fitted
    from hmmlearn.hmm import GaussianHMM

REGIME_LABELS = REGIME_NAMES  # alias of names.REGIME_NAMES
PROB_COLUMNS = REGIME_PROB_COLUMNS  # alias of names.REGIME_PROB_COLUMNS
FEATURE_COLUMNS: tuple[str, ...] = ("log_return", "realized_vol")
N_STATES = len(REGIME_NAMES)
VOLATILITY_ORDER: tuple[str, ...] = ("bull", "choppy", "bear", "crash")  # calmest first
FITTED, FALLBACK = "fitted", "fallback"


# --- inputs ---------------------------------------------------------------------------------


def sorted_benchmark(benchmark: pl.DataFrame) -> pl.DataFrame:
    """The benchmark's ``date`` (pl.Date) and ``close`` (Float64), sorted by date.

    Refuses (``ValueError`` naming the first offending date) a missing column, a date column
    that is not ``pl.Date``, a null date, duplicate dates, and closes that are null, NaN,
    infinite or not positive: a log return across any of them would be meaningless.
    """
    missing = {"date", "close"} - set(benchmark.columns)
    if missing:
        raise ValueError(f"benchmark lacks column(s) {sorted(missing)}")
    if benchmark.schema["date"] != pl.Date:
        raise ValueError(f"benchmark date must be pl.Date, got {benchmark.schema['date']}")
    frame = benchmark.select("date", pl.col("close").cast(pl.Float64)).sort("date")
    if frame["date"].null_count():
        raise ValueError("benchmark has a null date")
    duplicated = frame.filter(pl.col("date").is_duplicated())
    if duplicated.height:
        raise ValueError(f"benchmark has duplicate rows for date {duplicated['date'][0]}")
    bad = frame.filter(
        pl.col("close").is_null() | ~pl.col("close").is_finite() | (pl.col("close") <= 0)
    )
    if bad.height:
        raise ValueError(
            f"benchmark close on {bad['date'][0]} is {bad['close'][0]}: "
            "closes must be finite and positive"
        )
    return frame


def log_returns(closes: pl.Series) -> np.ndarray:
    """Daily log returns ``ln(close[t] / close[t-1])`` of sorted, positive closes; NaN at row 0."""
    # polars' log is a per-element libm call: the value depends only on the two closes.
    returns = (closes / closes.shift(1)).log().fill_null(float("nan"))
    return returns.to_numpy().astype(np.float64, copy=False)


def realized_vol_annualized(log_return: np.ndarray, window: int) -> np.ndarray:
    """Sample std (ddof=1) of the last ``window`` log returns × sqrt(252), window-exact.

    ``log_return`` is one series in date order; NaN until the window is full of finite values.
    """
    position = np.arange(log_return.shape[0])
    return rolling_std(log_return, position, window) * math.sqrt(SESSIONS_PER_YEAR)


def regime_inputs(benchmark: pl.DataFrame, vol_window: int) -> pl.DataFrame:
    """The HMM's observations: one row per benchmark session with both features defined.

    ``benchmark``: ``date`` (pl.Date), ``close`` (float), one row per session, any order.
    Returns ``date``, ``log_return`` (daily log return, dimensionless) and ``realized_vol``
    (annualised: sample std of the last ``vol_window`` daily log returns × sqrt(252)), sorted by
    date, only rows where both are finite — so the first ``vol_window`` sessions are dropped.
    Each row depends only on its own ``vol_window + 1`` closes. Refuses what
    :func:`sorted_benchmark` refuses (non-positive or null closes, duplicate dates).
    """
    if vol_window < 2:
        raise ValueError(f"vol_window must be >= 2 sessions, got {vol_window}")
    frame = sorted_benchmark(benchmark)
    returns = log_returns(frame["close"])
    vol = realized_vol_annualized(returns, vol_window)
    keep = np.isfinite(returns) & np.isfinite(vol)
    return pl.DataFrame(
        {"date": frame["date"], "log_return": returns, "realized_vol": vol},
        schema={"date": pl.Date, "log_return": pl.Float64, "realized_vol": pl.Float64},
    ).filter(pl.Series(keep))


def regime_input_lookback_sessions(settings: RegimeSettings) -> int:
    """Sessions of closes needed before the cut-off for exact HMM regimes after it.

    ``realized_vol_window`` closes give the first input row its full volatility window, and
    ``filter_burn_in_sessions`` input rows run the filter in before the cut-off
    (:func:`hmm_regimes`). A caller computing any period after a cut-off loads closes from this
    many sessions before the cut-off through the period's end; fitting additionally needs the
    training history before that.
    """
    return settings.realized_vol_window + settings.filter_burn_in_sessions


def _checked_inputs(inputs: pl.DataFrame) -> pl.DataFrame:
    missing = {"date", *FEATURE_COLUMNS} - set(inputs.columns)
    if missing:
        raise ValueError(f"regime inputs lack column(s) {sorted(missing)}")
    dates = inputs["date"]
    if inputs.height > 1 and not (dates.diff().drop_nulls().dt.total_days() > 0).all():
        raise ValueError("regime inputs must be sorted by strictly increasing date")
    for name in FEATURE_COLUMNS:
        values = inputs[name]
        if values.null_count() or not values.is_finite().all():
            first = inputs.filter(~pl.col(name).is_finite().fill_null(False))["date"][0]
            raise ValueError(f"regime input {name} is not finite on {first}")
    return inputs


def _feature_matrix(inputs: pl.DataFrame) -> np.ndarray:
    return np.column_stack([inputs[name].to_numpy().astype(np.float64) for name in FEATURE_COLUMNS])


# --- the fit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegimeFit:
    """One regime model (or the record that there is none) for the window from ``cutoff``.

    ``status`` is ``"fitted"`` or ``"fallback"`` (then ``reason`` says why and ``params`` is
    empty). ``train_start``/``train_end`` are the first and last dates used (``train_end`` <
    ``cutoff``), ``n_obs`` the number of sessions, ``log_likelihood`` the best restart's total
    log-likelihood on the standardised training data (nats), ``converged_restarts`` how many EM
    restarts converged. ``params`` is JSON-serialisable: ``scaler_mean``/``scaler_std`` (per
    feature, original units), ``startprob``, ``transmat``, ``means`` and ``covars`` (full form;
    standardised units), ``state_labels`` (one per hidden state), and for reading
    ``state_mean_log_return`` (daily) and ``state_volatility_annualized`` (original units).
    """

    cutoff: date
    status: str
    reason: str | None
    n_obs: int
    train_start: date | None
    train_end: date | None
    log_likelihood: float | None
    converged_restarts: int
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, dates ISO, floats round-trip exactly; no NaN allowed)."""
        payload = asdict(self)
        for key in ("cutoff", "train_start", "train_end"):
            payload[key] = payload[key].isoformat() if payload[key] is not None else None
        return json.dumps(payload, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> RegimeFit:
        """Inverse of :meth:`to_json`. Refuses an unknown status or missing keys (ValueError)."""
        payload = json.loads(text)
        if payload.get("status") not in (FITTED, FALLBACK):
            raise ValueError(f"unknown regime fit status {payload.get('status')!r}")
        if payload.get("cutoff") is None:
            raise ValueError("a regime fit needs a cutoff date")
        for key in ("cutoff", "train_start", "train_end"):
            value = payload.get(key)
            payload[key] = date.fromisoformat(value) if value is not None else None
        try:
            return cls(**payload)
        except TypeError as exc:
            raise ValueError(f"not a regime fit: {exc}") from exc


@contextmanager
def _quiet_hmmlearn() -> Iterator[None]:
    # hmmlearn logs "Model is not converging" (and similar) on its own logger at WARNING for
    # every restart; the outcome is reported in the fit record instead.
    logger = logging.getLogger("hmmlearn")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(previous)


def _converged(model: GaussianHMM, tol: float) -> bool:
    # Not ``monitor_.converged``: hmmlearn also calls hitting n_iter "converged".
    history = model.monitor_.history
    return len(history) >= 2 and history[-1] - history[-2] < tol


def label_states(means: np.ndarray, variances: np.ndarray) -> list[str]:
    """Name each hidden state from its volatility (mean return breaks ties); one name each.

    ``means`` and ``variances``: shape (4, 2), per state the mean and variance of
    (daily log return, annualised realised volatility) in original units. A state's volatility
    is its daily log-return standard deviation × sqrt(252). Returns the label of each state, in
    state order. The rule orders the states by volatility, calmest first:
    ``bull``, ``choppy``, ``bear``, ``crash`` — so ``crash`` is always the most volatile state.
    Equal volatilities are ordered by higher mean return first, then by state index, so the
    result is deterministic.

    Why volatility and not mean return (as a "bull = highest mean" rule would): per-state mean
    daily returns differ by a few hundredths of a percent, about their standard error, so their
    order flips from one refit to the next — measured on the synthetic benchmark, a mean-based
    rule gave the same label to only 23-32 % of a common later period across yearly refits.
    State volatilities differ by 50-100 % and keep their order, and the order matches the
    stylised facts (bull markets are calm, bear markets turbulent, crashes extreme; the
    synthetic provider's regimes are specified the same way). ``state_mean_log_return`` is still
    stored with each fit so the means can be inspected. Refuses arrays not of shape (4, 2).
    """
    means = np.asarray(means, dtype=np.float64)
    variances = np.asarray(variances, dtype=np.float64)
    if means.shape != (N_STATES, 2) or variances.shape != (N_STATES, 2):
        raise ValueError(
            f"means and variances must have shape ({N_STATES}, 2), "
            f"got {means.shape} and {variances.shape}"
        )
    vol = np.sqrt(variances[:, 0] * SESSIONS_PER_YEAR)
    calm_first = sorted(range(N_STATES), key=lambda k: (vol[k], -means[k, 0], k))
    labels = [""] * N_STATES
    for state, label in zip(calm_first, VOLATILITY_ORDER, strict=True):
        labels[state] = label
    return labels


def _fallback(cutoff: date, reason: str, train: pl.DataFrame, converged: int = 0) -> RegimeFit:
    return RegimeFit(
        cutoff=cutoff,
        status=FALLBACK,
        reason=reason,
        n_obs=train.height,
        train_start=train["date"][0] if train.height else None,
        train_end=train["date"][-1] if train.height else None,
        log_likelihood=None,
        converged_restarts=converged,
        params={},
    )


def _best_of_restarts(
    standardised: np.ndarray, settings: RegimeSettings
) -> tuple[GaussianHMM | None, float, int, list[str]]:
    """The converged restart with the highest log-likelihood, its score, count, and failures."""
    from hmmlearn.hmm import GaussianHMM

    best: GaussianHMM | None = None
    best_score = -math.inf
    converged = 0
    failures: list[str] = []
    for restart in range(settings.restarts):
        model = GaussianHMM(
            n_components=N_STATES,
            covariance_type=settings.covariance_type,
            n_iter=settings.n_iter,
            tol=settings.tol,
            random_state=settings.seed + restart,
        )
        try:
            with _quiet_hmmlearn():
                model.fit(standardised)
                score = float(model.score(standardised))
        except (ValueError, np.linalg.LinAlgError) as exc:
            failures.append(f"restart {restart} raised {type(exc).__name__}: {exc}")
            continue
        if not _converged(model, settings.tol):
            failures.append(f"restart {restart} did not converge in {settings.n_iter} iterations")
            continue
        if not math.isfinite(score):
            failures.append(f"restart {restart} has a non-finite log-likelihood")
            continue
        converged += 1
        # Strictly greater: on a tie the earlier seed wins, so the choice is deterministic.
        if score > best_score:
            best, best_score = model, score
    return best, best_score, converged, failures


def fit_regime_model(inputs: pl.DataFrame, cutoff: date, settings: RegimeSettings) -> RegimeFit:
    """Fit the four-state Gaussian HMM on the input rows dated strictly before ``cutoff``.

    ``inputs`` as from :func:`regime_inputs` (sorted, finite). Uses the last
    ``train_window_sessions`` of those rows if set, else all (expanding window). Features are
    standardised with the training mean and (population) standard deviation, then
    ``settings.restarts`` EM runs seeded ``seed + i`` are fitted and the converged one with the
    highest log-likelihood kept (earlier seed on ties): deterministic for the same inputs.

    Returns a ``"fitted"`` :class:`RegimeFit`, or a ``"fallback"`` one with a precise reason
    (never raises) when there are fewer than ``min_train_sessions`` rows, a feature is constant,
    or no restart converged. Refuses malformed inputs (ValueError): missing columns, unsorted
    or duplicate dates, non-finite features.
    """
    inputs = _checked_inputs(inputs)
    train = inputs.filter(pl.col("date") < cutoff)
    if settings.train_window_sessions is not None:
        train = train.tail(settings.train_window_sessions)
    if train.height < settings.min_train_sessions:
        return _fallback(
            cutoff,
            f"too little history: {train.height} sessions < {settings.min_train_sessions}",
            train,
        )
    raw = _feature_matrix(train)
    scaler_mean = raw.mean(axis=0)
    scaler_std = raw.std(axis=0)
    if not (scaler_std > 0).all():
        flat = [name for name, s in zip(FEATURE_COLUMNS, scaler_std, strict=True) if s <= 0]
        return _fallback(cutoff, f"degenerate history: {', '.join(flat)} is constant", train)
    standardised = (raw - scaler_mean) / scaler_std
    best, score, converged, failures = _best_of_restarts(standardised, settings)
    if best is None:
        detail = "; ".join(failures)
        return _fallback(cutoff, f"no restart converged ({detail})", train, converged)

    covars = np.asarray(best.covars_, dtype=np.float64)  # hmmlearn returns full form
    means = np.asarray(best.means_, dtype=np.float64)
    original_means = means * scaler_std + scaler_mean
    original_variances = np.diagonal(covars, axis1=1, axis2=2) * scaler_std**2
    labels = label_states(original_means, original_variances)
    params: dict[str, Any] = {
        "feature_names": list(FEATURE_COLUMNS),
        "covariance_type": settings.covariance_type,
        "scaler_mean": scaler_mean.tolist(),
        "scaler_std": scaler_std.tolist(),
        "startprob": np.asarray(best.startprob_, dtype=np.float64).tolist(),
        "transmat": np.asarray(best.transmat_, dtype=np.float64).tolist(),
        "means": means.tolist(),
        "covars": covars.tolist(),
        "state_labels": labels,
        "state_mean_log_return": original_means[:, 0].tolist(),
        "state_volatility_annualized": np.sqrt(
            original_variances[:, 0] * SESSIONS_PER_YEAR
        ).tolist(),
    }
    return RegimeFit(
        cutoff=cutoff,
        status=FITTED,
        reason=None,
        n_obs=train.height,
        train_start=train["date"][0],
        train_end=train["date"][-1],
        log_likelihood=score,
        converged_restarts=converged,
        params=params,
    )


# --- reading the fit ------------------------------------------------------------------------


def _model_from_params(params: dict[str, Any]) -> GaussianHMM:
    """Rebuild the fitted GaussianHMM from its JSON parameters (standardised units)."""
    from hmmlearn.hmm import GaussianHMM

    startprob = np.asarray(params["startprob"], dtype=np.float64)
    model = GaussianHMM(
        n_components=startprob.shape[0], covariance_type="full", init_params="", params=""
    )
    model.n_features = len(params["scaler_mean"])
    model.startprob_ = startprob
    model.transmat_ = np.asarray(params["transmat"], dtype=np.float64)
    model.means_ = np.asarray(params["means"], dtype=np.float64)
    model.covars_ = np.asarray(params["covars"], dtype=np.float64)
    return model


def _require_fitted(fit: RegimeFit) -> None:
    if fit.status != FITTED:
        raise ValueError(
            f"regime fit for cut-off {fit.cutoff} is a fallback ({fit.reason}); "
            "it has no probabilities — use the rule regimes"
        )


def _label_order(fit: RegimeFit) -> list[int]:
    """Hidden-state index of each label, in REGIME_NAMES order."""
    labels: Sequence[str] = fit.params["state_labels"]
    if sorted(labels) != sorted(REGIME_NAMES):
        raise ValueError(f"state_labels {labels} must name each of {REGIME_NAMES} once")
    return [labels.index(label) for label in REGIME_NAMES]


def _standardised_columns(fit: RegimeFit, inputs: pl.DataFrame) -> list[np.ndarray]:
    mean, std = fit.params["scaler_mean"], fit.params["scaler_std"]
    return [
        (inputs[name].to_numpy().astype(np.float64) - mean[j]) / std[j]
        for j, name in enumerate(FEATURE_COLUMNS)
    ]


def _emission_log_density(columns: list[np.ndarray], model: GaussianHMM) -> np.ndarray:
    """Gaussian log density of every row under every state, shape (n_rows, n_states).

    Element-wise per row (Cholesky forward substitution written out per feature), so a row's
    value never depends on the other rows passed.
    """
    n_rows, n_features = columns[0].shape[0], len(columns)
    out = np.empty((n_rows, model.n_components))
    for state in range(model.n_components):
        chol = np.linalg.cholesky(np.asarray(model.covars_[state], dtype=np.float64))
        mean = model.means_[state]
        solved: list[np.ndarray] = []  # z = L^-1 (x - mean), one feature at a time
        for i in range(n_features):
            residual = columns[i] - mean[i]
            for j in range(i):
                residual = residual - chol[i, j] * solved[j]
            solved.append(residual / chol[i, i])
        mahalanobis = solved[0] * solved[0]
        for z in solved[1:]:
            mahalanobis = mahalanobis + z * z
        log_norm = float(np.log(np.diagonal(chol)).sum()) + 0.5 * n_features * math.log(2 * math.pi)
        out[:, state] = -0.5 * mahalanobis - log_norm
    return out


def _forward_filter(
    startprob: np.ndarray, transmat: np.ndarray, log_density: np.ndarray
) -> np.ndarray:
    """Normalised forward recursion: row t = P(state_t | rows 0..t), shape like log_density."""
    out = np.empty_like(log_density)
    prior = startprob
    with np.errstate(divide="ignore"):  # a zero prior is log 0 = -inf: that state is impossible
        for t in range(log_density.shape[0]):
            log_joint = np.log(prior) + log_density[t]
            posterior = np.exp(log_joint - log_joint.max())
            posterior = posterior / posterior.sum()
            out[t] = posterior
            # Fixed-shape (states x states) products: same bits whatever the row count.
            prior = (posterior[:, None] * transmat).sum(axis=0)
    return out


def filtered_probabilities(fit: RegimeFit, inputs: pl.DataFrame) -> np.ndarray:
    """Filtered regime probabilities: row t = P(regime_t | input rows 0..t), no look-ahead.

    ``inputs`` as from :func:`regime_inputs`; the recursion starts from the fit's
    ``startprob`` at the first row. Returns shape (n_rows, 4), columns in
    :data:`REGIME_NAMES` order, each row summing to 1 within 1e-12; row t is bit-identical
    whatever rows come after it. Refuses a fallback fit and malformed inputs (ValueError).
    """
    _require_fitted(fit)
    inputs = _checked_inputs(inputs)
    if inputs.height == 0:
        return np.empty((0, N_STATES))
    model = _model_from_params(fit.params)
    log_density = _emission_log_density(_standardised_columns(fit, inputs), model)
    probabilities = _forward_filter(model.startprob_, model.transmat_, log_density)
    return probabilities[:, _label_order(fit)]


def smoothed_probabilities(fit: RegimeFit, inputs: pl.DataFrame) -> np.ndarray:
    """Smoothed probabilities P(regime_t | all input rows), hmmlearn's ``predict_proba``.

    Shape (n_rows, 4), columns in :data:`REGIME_NAMES` order. Uses rows *after* t: look-ahead.
    Exists only to show the difference to :func:`filtered_probabilities` in tests; never store
    it. Refuses a fallback fit and malformed inputs (ValueError).
    """
    _require_fitted(fit)
    inputs = _checked_inputs(inputs)
    if inputs.height == 0:
        return np.empty((0, N_STATES))
    model = _model_from_params(fit.params)
    standardised = np.column_stack(_standardised_columns(fit, inputs))
    return np.asarray(model.predict_proba(standardised))[:, _label_order(fit)]


def _empty_hmm_regimes() -> pl.DataFrame:
    schema: dict[str, Any] = {"date": pl.Date}
    schema.update({name: pl.Float64 for name in REGIME_PROB_COLUMNS})
    schema["hmm_label"] = pl.Utf8
    return pl.DataFrame(schema=schema)


def hmm_regimes(
    fit: RegimeFit, inputs: pl.DataFrame, start: date, end: date, burn_in_sessions: int
) -> pl.DataFrame:
    """The HMM's regime for each input date in ``[start, end)`` on or after ``fit.cutoff``.

    The filter starts ``burn_in_sessions`` input rows before the first row dated on or after
    the cut-off (or at the first input row if there are fewer), so a date's value depends only
    on the rows from that fixed point up to the date: one month equals the same month cut
    from a whole-window run, bit for bit, provided both pass inputs reaching back that far
    (:func:`regime_input_lookback_sessions`).

    Returns ``date``, ``regime_prob_bull/bear/choppy/crash`` (Float64, rows sum to 1) and
    ``hmm_label`` (the most probable label; ties go to the first in :data:`REGIME_NAMES`),
    sorted by date. Empty for a fallback fit or when no input date qualifies. Refuses a
    negative burn-in and malformed inputs (ValueError).
    """
    if burn_in_sessions < 0:
        raise ValueError(f"burn_in_sessions must be >= 0, got {burn_in_sessions}")
    inputs = _checked_inputs(inputs)
    if fit.status != FITTED:
        return _empty_hmm_regimes()
    dates = inputs["date"]
    first_after_cutoff = int(dates.search_sorted(fit.cutoff, side="left"))
    stop = int(dates.search_sorted(end, side="left"))  # rows from `end` on are not needed
    if first_after_cutoff >= stop:
        return _empty_hmm_regimes()
    begin = max(0, first_after_cutoff - burn_in_sessions)
    window = inputs.slice(begin, stop - begin)
    probabilities = filtered_probabilities(fit, window)
    labels = np.array(REGIME_NAMES, dtype=object)[np.argmax(probabilities, axis=1)]
    frame = pl.DataFrame(
        {
            "date": window["date"],
            **{name: probabilities[:, j] for j, name in enumerate(REGIME_PROB_COLUMNS)},
            "hmm_label": pl.Series(labels.tolist(), dtype=pl.Utf8),
        }
    )
    first_date = max(start, fit.cutoff)
    return frame.filter((pl.col("date") >= first_date) & (pl.col("date") < end))
