"""Does a signal predict returns? Information coefficients, quantile returns and turnover.

Pure domain code on polars frames and NumPy arrays (no orchestration). Conventions:

- **Forward return** of origin session t over horizon h: the simple return
  ``close[t+h] / close[t] - 1`` (a fraction), where t+h is the h-th later session *of the same
  ticker* (its own rows of ``closes``). :func:`forward_returns` stores it at the session it is
  realised (t+h), like the labels table, so a table read as of D holds no return realised
  after D. :func:`evaluate_signals` uses it by origin date, as a research evaluation does.
- **Information coefficient** (IC) of a signal on an origin date: the cross-sectional Pearson
  correlation between the signal values and the forward returns of the names that have both;
  the **rank IC** is the Spearman correlation (Pearson of average ranks, ties averaged), as
  ``alphalens.performance.factor_information_coefficient``.
- **Quantiles** (per signal and origin date, among the names with a value that day): the name
  whose value has 0-based ascending position ``a`` (the lowest position of its tie group) of
  ``n`` gets quantile ``max(1, ceil(a · quantiles / (n − 1)))``. In exact arithmetic that is
  ``pandas.qcut(values, quantiles)`` (edges at linearly interpolated quantiles, bins closed on
  the right), i.e. alphalens' ``quantize_factor``: 30 names give quintiles of 6. Tied values
  share one quantile (that of their lowest position) and never raise, so with many ties a
  quantile can be empty on a date, where alphalens raises "Bin edges must be unique". With
  fewer names than quantiles some quantiles are empty; the lowest and highest value always
  fall in quantile 1 and ``quantiles`` unless tied with others.
- **Top-minus-bottom spread** on a date: mean forward return of the top quantile minus that of
  the bottom quantile (a 100 % long, 100 % short book). alphalens ≥ 0.5's
  ``compute_mean_returns_spread`` halves this (50 % / 50 %).
- **Rank autocorrelation** on session t: Pearson correlation of the names' average ranks on t
  with their ranks on the previous session of ``closes``, over the names ranked on both (each
  day's ranks among that day's names), as ``factor_rank_autocorrelation(period=1)``. **Turnover**
  of a quantile on t: the share of the quantile's names on t that were not in it on the
  previous session, as ``quantile_turnover(period=1)``. Both are null when the previous
  session was not evaluated (no values, or too few names).
- Nothing is dropped silently: :attr:`SignalEvaluation.dropped` counts, per signal, horizon
  and reason, the factor rows and dates left out (see the ``DROP_*`` reasons).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from quant_assets.schemas import Column

DEFAULT_HORIZONS: tuple[int, ...] = (1, 5, 21)
DEFAULT_DECAY_HORIZONS = range(1, 22)
DEFAULT_QUANTILES = 5
DEFAULT_MIN_NAMES = 5

# Schema of the forward-returns table (defined here, not in schemas.py, until it is stored).
FORWARD_RETURNS: tuple[Column, ...] = (
    Column("ticker", pl.Utf8(), "instrument symbol"),
    Column("date", pl.Date(), "session the forward return is realised on (origin + h sessions)"),
    Column("horizon", pl.Int16(), "h: sessions of the ticker from origin to realisation"),
    Column("origin_date", pl.Date(), "session the return is measured from"),
    Column("forward_return", pl.Float64(), "close[realisation] / close[origin] - 1 (fraction)"),
)

# Why factor rows or dates are left out of an evaluation (SignalEvaluation.dropped.reason).
DROP_MISSING_VALUE = "missing_value"  # value null or NaN (e.g. before a feature warm-up)
DROP_NO_CLOSE = "no_close_at_origin"  # no bar in closes for the factor row's (date, ticker)
DROP_NO_FORWARD_RETURN = "no_forward_return"  # fewer than h later sessions (end of history)
DROP_TOO_FEW_NAMES = "too_few_names"  # the date has fewer than min_names usable names
DROP_CONSTANT = "constant_cross_section"  # signal or returns equal across names: IC undefined
DROP_NO_REGIME = "no_regime_label"  # origin date without a regime: left out of *_by_regime only


@dataclass(frozen=True)
class SignalEvaluation:
    """Every table of a signal evaluation; each a polars DataFrame sorted by its key columns.

    ``date`` is always the **origin** date (when the signal is known); ``horizon`` is in
    sessions; returns are simple-return fractions (0.01 = 1 %); ``regime_label`` is the regime
    of the origin date (null when ``regimes`` has no row for it).

    - ``ic`` — one row per (signal, date, horizon) evaluated: signal, date, horizon (Int16),
      regime_label, n_names (names with a value and a forward return), ic (Pearson), rank_ic
      (Spearman), top_bottom_spread (mean forward return of the top quantile minus the bottom
      one). ic and rank_ic are null on a constant cross-section; the spread is null when the top
      or bottom quantile is empty (ties).
    - ``summary`` — one row per (signal, horizon): n_dates (dates with a defined IC), mean_ic,
      ic_std, ic_t_stat, ic_ir, ic_hit_rate, mean_rank_ic, rank_ic_std, rank_ic_t_stat,
      rank_ic_ir, rank_ic_hit_rate, mean_top_bottom_spread, mean_rank_autocorrelation,
      mean_top_turnover, mean_bottom_turnover. std is the sample std (ddof=1) across dates;
      t_stat = mean / (std / √n_dates); ir = mean / std (per date, not annualised); hit_rate =
      share of dates with IC > 0. The autocorrelation and turnover means are over the signal's
      dates, the same for every horizon.
    - ``summary_by_regime`` — the same per (signal, horizon, regime_label), on the dates of that
      regime.
    - ``decay`` — one row per (signal, horizon) of the decay horizons: n_dates, mean_ic,
      mean_rank_ic. ``decay_by_regime`` adds regime_label.
    - ``quantile_returns`` — one row per (signal, horizon, quantile): n_dates (dates with the
      quantile non-empty), mean_forward_return (mean over dates of the quantile's equal-weighted
      mean forward return), mean_excess_return (the same after subtracting each date's
      cross-sectional mean, alphalens' ``demeaned=True``). ``quantile_returns_by_regime`` adds
      regime_label.
    - ``turnover`` — one row per (signal, date) with at least ``min_names`` values: regime_label,
      n_names, rank_autocorrelation, top_turnover (quantile ``quantiles``), bottom_turnover
      (quantile 1).
    - ``dropped`` — one row per (signal, horizon, reason) that left something out: n_rows
      (factor rows), n_dates (distinct origin dates of those rows). horizon is null for reasons
      that precede the horizons (missing values, no close, too few values for quantiles and
      turnover, no regime for a turnover date).
      ``constant_cross_section`` dates stay in ``ic`` with a null IC; ``no_regime_label`` rows
      are only missing from the ``*_by_regime`` tables.
    """

    ic: pl.DataFrame
    summary: pl.DataFrame
    summary_by_regime: pl.DataFrame
    decay: pl.DataFrame
    decay_by_regime: pl.DataFrame
    quantile_returns: pl.DataFrame
    quantile_returns_by_regime: pl.DataFrame
    turnover: pl.DataFrame
    dropped: pl.DataFrame
    horizons: tuple[int, ...]
    quantiles: int
    min_names: int


# --- input checks -------------------------------------------------------------------------


def _require_columns(frame: pl.DataFrame, columns: Sequence[str], argument: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{argument} lacks column(s) {missing} (has {frame.columns})")


def _checked_closes(closes: pl.DataFrame) -> pl.DataFrame:
    """ticker, date, close (Float64) sorted by ticker then date; refuses bad closes."""
    _require_columns(closes, ("date", "ticker", "close"), "closes")
    frame = closes.select(
        pl.col("ticker").cast(pl.Utf8),
        pl.col("date").cast(pl.Date),
        pl.col("close").cast(pl.Float64),
    ).sort("ticker", "date")
    bad = frame.filter(
        pl.col("close").is_null()
        | pl.col("close").is_nan()
        | (pl.col("close") <= 0)
        | pl.col("close").is_infinite()
        | pl.col("ticker").is_null()
        | pl.col("date").is_null()
    )
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(
            f"forward returns need a ticker, a date and a positive finite close: "
            f"{row['ticker']} on {row['date']} has close {row['close']}"
        )
    duplicated = frame.filter(pl.struct("ticker", "date").is_duplicated())
    if duplicated.height:
        row = duplicated.row(0, named=True)
        raise ValueError(f"duplicate close for {row['ticker']} on {row['date']}")
    return frame


def _checked_factors(factors: pl.DataFrame) -> pl.DataFrame:
    """signal, date, ticker, value (Float64); refuses duplicates, infinities and null keys."""
    _require_columns(factors, ("date", "ticker", "signal", "value"), "factors")
    try:
        frame = factors.select(
            pl.col("signal").cast(pl.Utf8),
            pl.col("date").cast(pl.Date),
            pl.col("ticker").cast(pl.Utf8),
            pl.col("value").cast(pl.Float64),
        )
    except pl.exceptions.PolarsError as error:
        raise ValueError(f"factors column 'value' must be numeric: {error}") from error
    bad = frame.filter(
        pl.col("signal").is_null()
        | pl.col("date").is_null()
        | pl.col("ticker").is_null()
        | pl.col("value").is_infinite()
    )
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(
            f"factors need a signal, date and ticker and no infinite value: signal "
            f"{row['signal']} for {row['ticker']} on {row['date']} has value {row['value']}"
        )
    duplicated = frame.filter(pl.struct("signal", "date", "ticker").is_duplicated())
    if duplicated.height:
        row = duplicated.row(0, named=True)
        raise ValueError(
            f"duplicate factor value: signal {row['signal']} for {row['ticker']} on {row['date']}"
        )
    return frame


def _checked_regimes(regimes: pl.DataFrame) -> pl.DataFrame:
    """date, regime_label (one row per date); other columns are ignored."""
    _require_columns(regimes, ("date", "regime_label"), "regimes")
    frame = regimes.select(pl.col("date").cast(pl.Date), pl.col("regime_label").cast(pl.Utf8))
    duplicated = frame.filter(pl.col("date").is_duplicated())
    if duplicated.height:
        raise ValueError(f"regimes has more than one row for {duplicated['date'][0]}")
    return frame.filter(pl.col("regime_label").is_not_null())


def _checked_horizons(horizons: Iterable[int], argument: str) -> tuple[int, ...]:
    values = tuple(horizons)
    if not values:
        raise ValueError(f"{argument} is empty")
    for horizon in values:
        if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
            raise ValueError(f"{argument} must be positive integers (sessions), got {horizon!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{argument} has duplicates: {values}")
    return tuple(sorted(int(h) for h in values))


# --- forward returns ----------------------------------------------------------------------


def _forward_return_rows(
    ticker_codes: np.ndarray, close: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Origin row indices and their forward returns over ``horizon`` rows of the same ticker.

    ``ticker_codes`` (int, one per row) and ``close`` (float64, > 0) are rows sorted by ticker
    then date, so row i+h is the h-th later session of row i's ticker iff the codes are equal.
    Returns (origin rows, ``close[i+h] / close[i] - 1``), both of length n_origins.
    """
    n_rows = close.shape[0]
    if horizon >= n_rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    origin = np.arange(n_rows - horizon)
    origin = origin[ticker_codes[origin] == ticker_codes[origin + horizon]]
    return origin, close[origin + horizon] / close[origin] - 1.0


def forward_returns(
    closes: pl.DataFrame, horizons: Iterable[int] = DEFAULT_HORIZONS
) -> pl.DataFrame:
    """The forward return of every (origin session, ticker) over each horizon, stored as-of.

    ``closes``: date, ticker, close (other columns ignored), one row per (ticker, session), any
    order. A horizon h counts the ticker's own sessions (rows). Returns the columns of
    :data:`FORWARD_RETURNS`: ticker, date (the realisation session t+h), horizon (Int16),
    origin_date (t), forward_return (``close[t+h] / close[t] - 1``, a simple-return fraction),
    sorted by ticker, date, horizon. Origins with fewer than h later sessions have no row.

    A row dated X depends only on the closes of its origin and of X, so perturbing closes after
    a date D changes no row dated D or earlier.

    Raises ValueError for missing columns, non-positive horizons, and naming the ticker and date
    of a null, NaN, infinite or non-positive close or of a duplicate (date, ticker).
    """
    frame = _checked_closes(closes)
    checked = _checked_horizons(horizons, "horizons")
    codes = frame.select(pl.col("ticker").rle_id())["ticker"].to_numpy()
    close = frame["close"].to_numpy()
    parts = []
    for horizon in checked:
        origin, values = _forward_return_rows(codes, close, horizon)
        parts.append(
            pl.DataFrame(
                {
                    "ticker": frame["ticker"].gather(origin),
                    "date": frame["date"].gather(origin + horizon),
                    "horizon": pl.Series(np.full(origin.size, horizon), dtype=pl.Int16),
                    "origin_date": frame["date"].gather(origin),
                    "forward_return": pl.Series(values, dtype=pl.Float64),
                }
            )
        )
    return pl.concat(parts).sort("ticker", "date", "horizon")


# --- array kernels (n_dates, n_names) -----------------------------------------------------


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row Pearson correlation of ``x`` and ``y`` (both (n_dates, n_names), NaN = absent).

    Uses the names finite in both; returns (n_dates,) float64, NaN where a row has fewer than
    two such names or either side is constant (correlation undefined). Deviations from the
    row mean are formed before multiplying, so the sums do not cancel catastrophically.
    """
    both = np.isfinite(x) & np.isfinite(y)
    count = both.sum(axis=1)
    safe_count = np.maximum(count, 1)
    x0 = np.where(both, x, 0.0)
    y0 = np.where(both, y, 0.0)
    dx = np.where(both, x0 - (x0.sum(axis=1) / safe_count)[:, None], 0.0)
    dy = np.where(both, y0 - (y0.sum(axis=1) / safe_count)[:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = (dx * dy).sum(axis=1) / np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    # Constant rows are detected exactly (max == min): a mean of equal floats need not equal
    # them, which would leave a tiny non-zero variance and a meaningless correlation.
    constant = (_row_range(x, both) == 0.0) | (_row_range(y, both) == 0.0)
    correlation[(count < 2) | constant] = np.nan
    return correlation


def _row_range(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    high = np.where(mask, values, -np.inf).max(axis=1)
    low = np.where(mask, values, np.inf).min(axis=1)
    with np.errstate(invalid="ignore"):
        return high - low


def _row_ranks(values: np.ndarray, method: str) -> np.ndarray:
    """Ranks 1..n within each row of ``values`` (n_dates, n_names) among its finite entries;
    NaN where absent. ``method="average"`` gives tied entries the mean of their positions
    (scipy's ``rankdata`` default, what Spearman's correlation uses), ``"min"`` the lowest.
    Ranks are exact (integers or halves). One sort per call, for all rows at once."""
    if method not in ("average", "min"):
        raise ValueError(f"method must be 'average' or 'min', got {method!r}")
    n_names = values.shape[1]
    if n_names == 0:
        return values.astype(float)
    finite = np.isfinite(values)
    # Absent entries sort last (+inf), so the finite ones take positions 0..n_finite-1.
    filled = np.where(finite, values, np.inf)
    order = np.argsort(filled, axis=1, kind="stable")
    ordered = np.take_along_axis(filled, order, axis=1)
    position = np.broadcast_to(np.arange(n_names), values.shape)
    starts = np.ones(values.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    if method == "min":
        ranked = first + 1.0
    else:
        ends = np.ones(values.shape, dtype=bool)
        ends[:, :-1] = starts[:, 1:]
        last = np.minimum.accumulate(np.where(ends, position, n_names)[:, ::-1], axis=1)[:, ::-1]
        ranked = (first + last) / 2.0 + 1.0
    ranks = np.empty(values.shape)
    np.put_along_axis(ranks, order, ranked, axis=1)
    ranks[~finite] = np.nan
    return ranks


def _quantile_labels(values: np.ndarray, quantiles: int) -> np.ndarray:
    """Quantile 1..``quantiles`` of each finite entry of ``values`` (n_dates, n_names); 0 where
    absent. ``max(1, ceil(a · quantiles / (n − 1)))`` with a the 0-based position of the tie
    group's lowest member and n the row's count: pandas.qcut's bins in exact (integer)
    arithmetic. Rows with one name put it in quantile 1."""
    finite = np.isfinite(values)
    count = finite.sum(axis=1).astype(np.int64)[:, None]
    position = np.where(finite, np.nan_to_num(_row_ranks(values, "min"), nan=1.0) - 1, 0)
    position = position.astype(np.int64)
    denominator = np.maximum(count - 1, 1)
    labels = np.maximum(1, -((-position * quantiles) // denominator))
    return np.where(finite, labels, 0)


def _new_share(current: np.ndarray, previous: np.ndarray, previous_ok: np.ndarray) -> np.ndarray:
    """Share of each row's members (bool (n_dates, n_names)) not members on the previous row;
    NaN on the first row, where the previous row was not evaluated, or with no members."""
    members = current.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (current & ~previous).sum(axis=1) / members
    share[~previous_ok | (members == 0)] = np.nan
    return share


def _lagged(values: np.ndarray, fill: float | bool) -> np.ndarray:
    """``values`` shifted one row down (the previous session), ``fill`` in the first row."""
    shifted = np.empty_like(values)
    if len(values):
        shifted[0] = fill
        shifted[1:] = values[:-1]
    return shifted


# --- aggregation --------------------------------------------------------------------------


def _ic_statistics(column: str) -> list[pl.Expr]:
    ic = pl.col(column)
    mean, std, count = ic.mean(), ic.std(ddof=1), ic.count()
    usable = std > 0
    return [
        mean.alias(f"mean_{column}"),
        std.alias(f"{column}_std"),
        pl.when(usable).then(mean / (std / count.sqrt())).alias(f"{column}_t_stat"),
        pl.when(usable).then(mean / std).alias(f"{column}_ir"),
        pl.when(count > 0).then((ic > 0).sum() / count).alias(f"{column}_hit_rate"),
    ]


def _summaries(ic: pl.DataFrame, turnover: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """IC statistics per ``keys`` (which include signal and horizon), with the turnover means
    of the same signal (and regime, when a key) joined in."""
    turnover_keys = [k for k in keys if k != "horizon"]
    statistics = ic.group_by(keys).agg(
        pl.col("rank_ic").count().alias("n_dates"),
        *_ic_statistics("ic"),
        *_ic_statistics("rank_ic"),
        pl.col("top_bottom_spread").mean().alias("mean_top_bottom_spread"),
    )
    turnover_means = turnover.group_by(turnover_keys).agg(
        pl.col("rank_autocorrelation").mean().alias("mean_rank_autocorrelation"),
        pl.col("top_turnover").mean().alias("mean_top_turnover"),
        pl.col("bottom_turnover").mean().alias("mean_bottom_turnover"),
    )
    return (
        statistics.join(turnover_means, on=turnover_keys, how="left", nulls_equal=True)
        .with_columns(pl.col("n_dates").cast(pl.Int64))
        .sort(keys)
    )


def _decay(ic: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return (
        ic.group_by(keys)
        .agg(
            pl.col("rank_ic").count().cast(pl.Int64).alias("n_dates"),
            pl.col("ic").mean().alias("mean_ic"),
            pl.col("rank_ic").mean().alias("mean_rank_ic"),
        )
        .sort(keys)
    )


def _quantile_means(per_date: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return (
        per_date.group_by(keys)
        .agg(
            pl.len().cast(pl.Int64).alias("n_dates"),
            pl.col("mean_forward_return").mean(),
            pl.col("mean_excess_return").mean(),
        )
        .sort(keys)
    )


# --- evaluation ---------------------------------------------------------------------------


@dataclass
class _Tables:
    """Per-signal pieces gathered before concatenation."""

    ic: list[pl.DataFrame]
    quantile: list[pl.DataFrame]
    turnover: list[pl.DataFrame]
    dropped: list[dict[str, object]]


def _drop(
    tables: _Tables, signal: str, horizon: int | None, reason: str, rows: int, dates: int
) -> None:
    if rows or dates:
        tables.dropped.append(
            {
                "signal": signal,
                "horizon": horizon,
                "reason": reason,
                "n_rows": rows,
                "n_dates": dates,
            }
        )


def _evaluate_signal(
    tables: _Tables,
    signal: str,
    values: np.ndarray,
    returns_by_horizon: dict[int, np.ndarray],
    sessions: pl.Series,
    horizons: tuple[int, ...],
    quantiles: int,
    min_names: int,
) -> None:
    """Evaluate one signal: ``values`` (n_dates, n_names), NaN where absent, on the grid of
    ``sessions``; ``returns_by_horizon[h]`` the forward returns by origin on the same grid."""
    # Quantiles, rank autocorrelation and turnover: among the names with a value that day.
    count = np.isfinite(values).sum(axis=1)
    evaluated = count >= min_names
    few = (count > 0) & ~evaluated
    _drop(tables, signal, None, DROP_TOO_FEW_NAMES, int(count[few].sum()), int(few.sum()))
    kept = np.where(evaluated[:, None], values, np.nan)
    labels = _quantile_labels(kept, quantiles)
    ranks = _row_ranks(kept, "average")
    previous_ok = _lagged(evaluated, False)
    top, bottom = labels == quantiles, labels == 1
    tables.turnover.append(
        pl.DataFrame(
            {
                "signal": signal,
                "date": sessions,
                "n_names": count,
                "rank_autocorrelation": _rowwise_pearson(ranks, _lagged(ranks, np.nan)),
                "top_turnover": _new_share(top, _lagged(top, False), previous_ok),
                "bottom_turnover": _new_share(bottom, _lagged(bottom, False), previous_ok),
            }
        ).filter(pl.Series(evaluated))
    )

    for horizon, returns in returns_by_horizon.items():
        usable = np.isfinite(values) & np.isfinite(returns)
        n_usable = usable.sum(axis=1)
        no_return = np.isfinite(values) & ~np.isfinite(returns)
        _drop(
            tables,
            signal,
            horizon,
            DROP_NO_FORWARD_RETURN,
            int(no_return.sum()),
            int(no_return.any(axis=1).sum()),
        )
        keep = n_usable >= min_names
        few = (n_usable > 0) & ~keep
        _drop(tables, signal, horizon, DROP_TOO_FEW_NAMES, int(n_usable[few].sum()), int(few.sum()))
        usable &= keep[:, None]
        x = np.where(usable, values, np.nan)
        y = np.where(usable, returns, np.nan)
        ic = _rowwise_pearson(x, y)
        rank_ic = _rowwise_pearson(_row_ranks(x, "average"), _row_ranks(y, "average"))
        undefined = keep & np.isnan(rank_ic)
        _drop(
            tables,
            signal,
            horizon,
            DROP_CONSTANT,
            int(n_usable[undefined].sum()),
            int(undefined.sum()),
        )
        spread = np.full(values.shape[0], np.nan)
        if horizon in horizons:
            with np.errstate(invalid="ignore", divide="ignore"):
                date_mean = np.where(usable, y, 0.0).sum(axis=1) / n_usable
                means = {}
                for quantile in range(1, quantiles + 1):
                    members = usable & (labels == quantile)
                    n_members = members.sum(axis=1)
                    mean = np.where(members, y, 0.0).sum(axis=1) / n_members
                    means[quantile] = mean
                    tables.quantile.append(
                        pl.DataFrame(
                            {
                                "signal": signal,
                                "date": sessions,
                                "horizon": pl.Series([horizon] * len(sessions), dtype=pl.Int16),
                                "quantile": pl.Series([quantile] * len(sessions), dtype=pl.Int16),
                                "mean_forward_return": mean,
                                "mean_excess_return": mean - date_mean,
                            }
                        ).filter(pl.Series(n_members > 0))
                    )
            spread = means[quantiles] - means[1]
        tables.ic.append(
            pl.DataFrame(
                {
                    "signal": signal,
                    "date": sessions,
                    "horizon": pl.Series([horizon] * len(sessions), dtype=pl.Int16),
                    "n_names": n_usable,
                    "ic": ic,
                    "rank_ic": rank_ic,
                    "top_bottom_spread": spread,
                }
            ).filter(pl.Series(keep))
        )


def _with_regime(frame: pl.DataFrame, regimes: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the origin date's regime_label after its key columns."""
    joined = frame.join(regimes, on="date", how="left")
    keys = [c for c in ("signal", "date", "horizon", "quantile") if c in frame.columns]
    return joined.select(*keys, "regime_label", *(c for c in frame.columns if c not in keys))


def evaluate_signals(
    factors: pl.DataFrame,
    closes: pl.DataFrame,
    regimes: pl.DataFrame,
    *,
    horizons: Iterable[int] = DEFAULT_HORIZONS,
    decay_horizons: Iterable[int] = DEFAULT_DECAY_HORIZONS,
    quantiles: int = DEFAULT_QUANTILES,
    min_names: int = DEFAULT_MIN_NAMES,
) -> SignalEvaluation:
    """Evaluate how well each signal predicts forward returns; see :class:`SignalEvaluation`.

    ``factors``: long, one row per (signal, date, ticker) with its ``value`` (the signal known at
    the close of ``date``); many signals at once. ``closes``: date, ticker, close (the bars).
    ``regimes``: date, regime_label (other columns ignored). ``horizons`` (sessions) get the IC,
    quantile and turnover tables; ``decay_horizons`` the IC decay curve. A date enters a signal's
    statistics at horizon h when at least ``min_names`` names have both a value and a forward
    return; quantiles and turnover need ``min_names`` values. Everything left out is counted in
    ``dropped`` (null/NaN values, factor rows without a close, origins too close to the end of
    history, dates with too few names, constant cross-sections, dates without a regime).

    Raises ValueError for missing columns, duplicate (signal, date, ticker) factor rows,
    infinite factor values, duplicate regime dates, bad closes (see :func:`forward_returns`),
    non-positive or duplicate horizons, ``quantiles < 2`` or ``min_names < 2``.
    """
    bars = _checked_closes(closes)
    frame = _checked_factors(factors)
    regime_frame = _checked_regimes(regimes)
    main_horizons = _checked_horizons(horizons, "horizons")
    decay = _checked_horizons(decay_horizons, "decay_horizons")
    if quantiles < 2:
        raise ValueError(f"quantiles must be at least 2, got {quantiles}")
    if min_names < 2:
        raise ValueError(f"min_names must be at least 2 (a correlation needs two), got {min_names}")

    # The grid: sessions (every date of closes, the calendar "previous session" refers to)
    # by tickers of closes.
    sessions = bars["date"].unique().sort()
    tickers = bars["ticker"].unique().sort()
    n_dates, n_tickers = len(sessions), len(tickers)
    session_numbers = sessions.to_numpy()
    ticker_numbers = tickers.to_numpy()
    date_index = np.searchsorted(session_numbers, bars["date"].to_numpy())
    ticker_index = np.searchsorted(ticker_numbers, bars["ticker"].to_numpy())
    codes = bars.select(pl.col("ticker").rle_id())["ticker"].to_numpy()
    close = bars["close"].to_numpy()
    returns_by_horizon: dict[int, np.ndarray] = {}
    for horizon in sorted(set(main_horizons) | set(decay)):
        origin, values = _forward_return_rows(codes, close, horizon)
        grid = np.full((n_dates, n_tickers), np.nan)
        grid[date_index[origin], ticker_index[origin]] = values
        returns_by_horizon[horizon] = grid

    keys = bars.select("date", "ticker").with_columns(
        pl.Series("_date_index", date_index), pl.Series("_ticker_index", ticker_index)
    )
    frame = frame.join(keys, on=["date", "ticker"], how="left")
    tables = _Tables(ic=[], quantile=[], turnover=[], dropped=[])
    for signal in sorted(frame["signal"].unique().to_list()):
        rows = frame.filter(pl.col("signal") == signal)
        missing = rows.filter(pl.col("value").is_null() | pl.col("value").is_nan())
        _drop(tables, signal, None, DROP_MISSING_VALUE, missing.height, missing["date"].n_unique())
        rows = rows.filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan())
        no_close = rows.filter(pl.col("_date_index").is_null())
        _drop(tables, signal, None, DROP_NO_CLOSE, no_close.height, no_close["date"].n_unique())
        rows = rows.filter(pl.col("_date_index").is_not_null())
        values = np.full((n_dates, n_tickers), np.nan)
        values[rows["_date_index"].to_numpy(), rows["_ticker_index"].to_numpy()] = rows[
            "value"
        ].to_numpy()
        _evaluate_signal(
            tables,
            signal,
            values,
            returns_by_horizon,
            sessions,
            main_horizons,
            quantiles,
            min_names,
        )
    return _assemble(tables, regime_frame, main_horizons, decay, quantiles, min_names)


_IC_SCHEMA = {
    "signal": pl.Utf8,
    "date": pl.Date,
    "horizon": pl.Int16,
    "n_names": pl.Int64,
    "ic": pl.Float64,
    "rank_ic": pl.Float64,
    "top_bottom_spread": pl.Float64,
}
_QUANTILE_SCHEMA = {
    "signal": pl.Utf8,
    "date": pl.Date,
    "horizon": pl.Int16,
    "quantile": pl.Int16,
    "mean_forward_return": pl.Float64,
    "mean_excess_return": pl.Float64,
}
_TURNOVER_SCHEMA = {
    "signal": pl.Utf8,
    "date": pl.Date,
    "n_names": pl.Int64,
    "rank_autocorrelation": pl.Float64,
    "top_turnover": pl.Float64,
    "bottom_turnover": pl.Float64,
}
_DROPPED_SCHEMA = {
    "signal": pl.Utf8,
    "horizon": pl.Int16,
    "reason": pl.Utf8,
    "n_rows": pl.Int64,
    "n_dates": pl.Int64,
}


def _concat(parts: list[pl.DataFrame], schema: dict[str, type[pl.DataType]]) -> pl.DataFrame:
    """Parts stacked with the declared dtypes; NaN (undefined statistics) as null."""
    frame = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    return frame.select(
        pl.col(name).cast(dtype).fill_nan(None) if dtype == pl.Float64 else pl.col(name).cast(dtype)
        for name, dtype in schema.items()
    )


def _assemble(
    tables: _Tables,
    regimes: pl.DataFrame,
    horizons: tuple[int, ...],
    decay_horizons: tuple[int, ...],
    quantiles: int,
    min_names: int,
) -> SignalEvaluation:
    every_ic = _with_regime(_concat(tables.ic, _IC_SCHEMA), regimes)
    quantile_per_date = _with_regime(_concat(tables.quantile, _QUANTILE_SCHEMA), regimes)
    turnover = _with_regime(_concat(tables.turnover, _TURNOVER_SCHEMA), regimes).sort(
        "signal", "date"
    )
    ic = every_ic.filter(pl.col("horizon").is_in(horizons)).sort("signal", "date", "horizon")
    decay_ic = every_ic.filter(pl.col("horizon").is_in(decay_horizons))

    unlabelled = ic.filter(pl.col("regime_label").is_null())
    for (signal, horizon), group in unlabelled.group_by(["signal", "horizon"]):
        _drop(
            tables,
            str(signal),
            int(horizon),
            DROP_NO_REGIME,
            int(group["n_names"].sum()),
            group.height,
        )
    for (signal,), group in turnover.filter(pl.col("regime_label").is_null()).group_by(["signal"]):
        _drop(tables, str(signal), None, DROP_NO_REGIME, int(group["n_names"].sum()), group.height)
    labelled = pl.col("regime_label").is_not_null()
    dropped = (
        pl.DataFrame(tables.dropped, schema=_DROPPED_SCHEMA)
        if tables.dropped
        else pl.DataFrame(schema=_DROPPED_SCHEMA)
    ).sort("signal", "horizon", "reason", nulls_last=False)
    return SignalEvaluation(
        ic=ic,
        summary=_summaries(ic, turnover, ["signal", "horizon"]),
        summary_by_regime=_summaries(
            ic.filter(labelled), turnover.filter(labelled), ["signal", "horizon", "regime_label"]
        ),
        decay=_decay(decay_ic, ["signal", "horizon"]),
        decay_by_regime=_decay(decay_ic.filter(labelled), ["signal", "horizon", "regime_label"]),
        quantile_returns=_quantile_means(quantile_per_date, ["signal", "horizon", "quantile"]),
        quantile_returns_by_regime=_quantile_means(
            quantile_per_date.filter(labelled), ["signal", "horizon", "regime_label", "quantile"]
        ),
        turnover=turnover,
        dropped=dropped,
        horizons=horizons,
        quantiles=quantiles,
        min_names=min_names,
    )
