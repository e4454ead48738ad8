"""Run Great Expectations 1.x suites on polars frames and report failures by ticker and date.

We use GX directly (``dagster-ge`` pins GX < 1.0): one ephemeral context per process, one
pandas dataframe asset per suite, whole-dataframe batches. Each expectation's failures come
back as :class:`ExpectationOutcome` with a few offending rows identified by their index
columns (ticker, date), so an error can say exactly where and which rule.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from quant_assets.errors import BadBarsError

# GX prints progress bars and chatty logs; a pipeline run should not.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
_LOCK = threading.Lock()
_CONTEXT: Any = None
_BATCH_DEFINITIONS: dict[str, Any] = {}
_EXAMPLES = 5


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation: the rule, whether it held, and where it did not."""

    rule: str
    column: str | None
    success: bool
    unexpected_count: int
    examples: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ValidationReport:
    """All outcomes of one suite on one frame."""

    suite: str
    row_count: int
    outcomes: tuple[ExpectationOutcome, ...] = field(default_factory=tuple)

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def summary(self) -> str:
        """One line per failed rule: rule, column, count, first offending rows."""
        lines = []
        for failure in self.failures:
            where = "; ".join(_format_example(e) for e in failure.examples)
            lines.append(
                f"{failure.rule}"
                + (f" on {failure.column}" if failure.column else "")
                + f": {failure.unexpected_count} row(s) failed"
                + (f", e.g. {where}" if where else "")
            )
        return "\n".join(lines)

    def raise_for_failures(self, source: str | None = None) -> None:
        """Raise BadBarsError naming the first failing rule, ticker and date."""
        if self.success:
            return
        first = self.failures[0]
        example = first.examples[0] if first.examples else {}
        raise BadBarsError(
            first.rule + (f"({first.column})" if first.column else ""),
            ticker=example.get("ticker"),
            date=_format_date(example.get("date") or example.get("window")),
            source=source,
            detail=f"suite {self.suite!r}:\n{self.summary()}",
        )

    def as_metadata(self) -> dict[str, Any]:
        """Plain-JSON metadata for the Dagster UI."""
        return {
            "suite": self.suite,
            "rows_validated": self.row_count,
            "expectations": len(self.outcomes),
            "failed_expectations": len(self.failures),
            "failures": self.summary() or "none",
        }


def _format_date(value: Any) -> str | None:
    if value is None:
        return None
    return value.date().isoformat() if hasattr(value, "date") else str(value)


def _format_example(example: dict[str, Any]) -> str:
    parts = []
    for key, value in example.items():
        if key == "date":
            value = _format_date(value)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def _context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        import great_expectations as gx

        for name in ("great_expectations", "great_expectations.core", "tqdm"):
            logging.getLogger(name).setLevel(logging.ERROR)
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _CONTEXT = gx.get_context(mode="ephemeral")
        # Its tqdm bars would flood every run's log and the CLI's terminal.
        _CONTEXT.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        _CONTEXT.data_sources.add_pandas("quant_assets")
    return _CONTEXT


def validate(
    frame: pl.DataFrame,
    suite_name: str,
    expectations: Sequence[Any],
    index_columns: Sequence[str] = ("ticker", "date"),
) -> ValidationReport:
    """Validate ``frame`` against ``expectations`` (GX expectation objects) as suite ``suite_name``.

    The frame is converted to pandas once. Returns a report; never raises on failed rules.
    """
    import great_expectations as gx

    index_columns = [c for c in index_columns if c in frame.columns]
    with _LOCK:
        context = _context()
        source = context.data_sources.get("quant_assets")
        if suite_name not in _BATCH_DEFINITIONS:
            asset = source.add_dataframe_asset(suite_name)
            _BATCH_DEFINITIONS[suite_name] = asset.add_batch_definition_whole_dataframe("all")
        batch_definition = _BATCH_DEFINITIONS[suite_name]
        suite = gx.ExpectationSuite(name=suite_name)
        for expectation in expectations:
            suite.add_expectation(expectation.copy())
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame.to_pandas()})
        result = batch.validate(
            suite,
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": list(index_columns),
                "partial_unexpected_count": _EXAMPLES,
            },
        )
    outcomes = []
    for item in result.results:
        config = item.expectation_config
        kwargs = config.kwargs
        column = kwargs.get("column") or (
            ",".join(kwargs["column_list"])
            if "column_list" in kwargs
            else (f"{kwargs['column_A']}>{kwargs['column_B']}" if "column_A" in kwargs else None)
        )
        res = item.result or {}
        raw_examples = res.get("unexpected_index_list") or []
        examples = tuple(
            {k: v for k, v in dict(e).items() if k in index_columns or k == column}
            if isinstance(e, dict)
            else {"row": e}
            for e in raw_examples[:_EXAMPLES]
        )
        outcomes.append(
            ExpectationOutcome(
                rule=config.type,
                column=column,
                success=bool(item.success),
                unexpected_count=int(res.get("unexpected_count") or 0),
                examples=examples,
            )
        )
    return ValidationReport(suite=suite_name, row_count=frame.height, outcomes=tuple(outcomes))
