"""Dagster's private API is used from one module only: ``quant_assets/dagster_internals.py``.

Private means a ``dagster._…`` module (any ``_``-prefixed component of a ``dagster`` /
``dagster_*`` module path), a ``_``-prefixed name imported from a Dagster package, or a
``"dagster._…"`` string (an instance YAML ``module:`` or an ``importlib`` path). Anything
else that needs one imports it from ``quant_assets.dagster_internals``, where each name
says why no public API does it.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import quant_assets

PACKAGE = Path(quant_assets.__file__).parent
ALLOWED = PACKAGE / "dagster_internals.py"


def _is_dagster(module: str) -> bool:
    top = module.split(".")[0]
    return top == "dagster" or top.startswith("dagster_")


def _private_module(module: str) -> bool:
    return _is_dagster(module) and any(part.startswith("_") for part in module.split("."))


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def private_uses(source: str, where: str) -> list[str]:
    """``where:line: what`` for each use of Dagster's private API in ``source``."""
    tree = ast.parse(source, filename=where)
    docstrings = _docstrings(tree)
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            uses += [
                f"{where}:{node.lineno}: import {a.name}"
                for a in node.names
                if _private_module(a.name)
            ]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _private_module(node.module):
                uses.append(f"{where}:{node.lineno}: from {node.module} import ...")
            elif _is_dagster(node.module):
                uses += [
                    f"{where}:{node.lineno}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                ]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and "dagster._" in node.value
        ):
            uses.append(f"{where}:{node.lineno}: string naming a private dagster module")
    return sorted(uses, key=lambda use: int(use.split(":")[1]))


def test_only_dagster_internals_uses_private_dagster_api():
    sources = sorted(p for p in PACKAGE.rglob("*.py") if p != ALLOWED)
    assert len(sources) > 10  # the scan found the package
    offenders = [
        use
        for path in sources
        for use in private_uses(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    ]
    assert not offenders, (
        "import these from quant_assets.dagster_internals (or use a public API):\n"
        + "\n".join(offenders)
    )


def test_the_scan_catches_each_kind_of_private_use():
    source = (
        '"""Docstrings may mention dagster._core freely."""\n'
        "import dagster._core.instance\n"
        "from dagster._core.definitions.events import AssetKeyPartitionKey\n"
        "from dagster_duckdb.io_manager import _get_cleanup_statement\n"
        "YAML = 'module: dagster._core.storage.root'\n"
        "import dagster as dg\n"
        "from dagster_duckdb import DuckDBIOManager\n"
        "from dagster.components import Component\n"
    )
    assert private_uses(source, "sample.py") == [
        "sample.py:2: import dagster._core.instance",
        "sample.py:3: from dagster._core.definitions.events import ...",
        "sample.py:4: from dagster_duckdb.io_manager import _get_cleanup_statement",
        "sample.py:5: string naming a private dagster module",
    ]


def test_every_reexported_name_resolves():
    internals = importlib.import_module("quant_assets.dagster_internals")
    missing = [name for name in internals.__all__ if getattr(internals, name, None) is None]
    assert not missing


def test_a_step_maps_each_input_onto_its_upstream_partitions_once(monkeypatch):
    """Dagster maps a step's partitions onto an input's twice (data versions, then the input
    context); the project keeps the first valid mapping for the step. Same values loaded,
    one mapping per input; an invalid mapping still raises as Dagster raises."""
    import dagster as dg
    import pytest

    from quant_assets import dagster_internals

    calls: list[str] = []
    uncached = dagster_internals._UNCACHED_SUBSET_FOR_INPUT

    def counting(self, input_name, require_valid_partitions=True):
        calls.append(input_name)
        return uncached(self, input_name, require_valid_partitions=require_valid_partitions)

    monkeypatch.setattr(dagster_internals, "_UNCACHED_SUBSET_FOR_INPUT", counting)
    dagster_internals.cache_input_partition_mappings()
    days = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-10")
    grid = dg.MultiPartitionsDefinition(
        {"date": days, "ticker": dg.StaticPartitionsDefinition(["A", "B"])}
    )

    @dg.asset(partitions_def=grid)
    def prices(context) -> int:
        return len(context.partition_keys)

    @dg.asset(
        partitions_def=grid,
        ins={
            "prices": dg.AssetIn(
                partition_mapping=dg.MultiPartitionMapping(
                    {
                        "date": dg.DimensionPartitionMapping(
                            "date", dg.TimeWindowPartitionMapping(-1, 0)
                        ),
                        "ticker": dg.DimensionPartitionMapping(
                            "ticker", dg.IdentityPartitionMapping()
                        ),
                    }
                )
            )
        },
    )
    def returns(context, prices: dict) -> int:
        return len(prices)

    instance = dg.DagsterInstance.ephemeral()
    keys = [dg.MultiPartitionKey({"date": "2024-01-03", "ticker": t}) for t in ("A", "B")]
    for key in keys:
        assert dg.materialize([prices], partition_key=key, instance=instance).success
        assert dg.materialize(
            [prices],
            partition_key=dg.MultiPartitionKey(
                {"date": "2024-01-02", "ticker": key.keys_by_dimension["ticker"]}
            ),
            instance=instance,
        ).success
    calls.clear()
    result = dg.materialize(
        [prices, returns], selection=[returns], partition_key=keys[0], instance=instance
    )
    assert result.success and result.output_for_node("returns") == 2  # 01-02 and 01-03
    assert calls == ["prices"]  # Dagster asked twice; mapped once

    # A mapping onto partitions that do not exist is never kept: asked leniently it answers
    # leniently, asked strictly it raises, as Dagster does.
    def invalid(self, input_name, require_valid_partitions=True):
        if require_valid_partitions:
            raise dg.DagsterInvariantViolationError("depends on invalid partitions")
        return "the existing part"

    monkeypatch.setattr(dagster_internals, "_UNCACHED_SUBSET_FOR_INPUT", invalid)
    step = type("Step", (), {})()
    lenient = dagster_internals._subset_for_input(step, "prices", require_valid_partitions=False)
    assert lenient == "the existing part"
    with pytest.raises(dg.DagsterInvariantViolationError, match="invalid partitions"):
        dagster_internals._subset_for_input(step, "prices")
