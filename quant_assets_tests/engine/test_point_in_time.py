"""Point-in-time universes: a name that lists or delists (or enters or leaves an index)
inside the range has bars only inside its membership, so every cross-section downstream —
features, signals, alpha, sizing, the book, orders — holds the members of its date."""

from datetime import date

import duckdb
import pytest
import yaml

from quant_assets.settings import UniverseSettings
from quant_assets_tests.conftest import materialize_all, write_project, write_strategies

BASE = {"benchmark": "IDX", "start": "2015-01-01", "end": "2019-12-31"}


def test_universe_entries_carry_membership_dates_and_stay_plain_symbols():
    universe = UniverseSettings.model_validate(
        {
            **BASE,
            "tickers": ["AAA", {"ENRN": {"to": "2016-06-30"}}, {"NEWCO": {"from": "2017-03-01"}}],
        }
    )
    assert universe.tickers == ["AAA", "ENRN", "NEWCO"]
    assert universe.membership["ENRN"].end == date(2016, 6, 30)
    assert universe.membership["NEWCO"].start == date(2017, 3, 1)
    mapping = UniverseSettings.model_validate(
        {**BASE, "tickers": {"AAA": None, "ENRN": {"to": "2016-06-30"}}}
    )
    assert mapping.tickers == ["AAA", "ENRN"] and "AAA" not in mapping.membership


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"ENRN": {"from": "2018-01-01", "to": "2017-01-01"}},
            "ticker ENRN: membership to 2017-01-01 is before from",
        ),
        (
            {"ENRN": {"to": "2014-01-01"}},
            "ticker ENRN: membership ends 2014-01-01, before the universe start",
        ),
        ({"ENRN": {"until": "2017-01-01"}}, "until"),
        ({"ENRN": "2017-01-01"}, "tickers entry ENRN: membership must be"),
        ({"ENRN": {"to": "2017-01-01"}, "BBB": None}, "one symbol per entry"),
        ({"enrn": {"to": "2017-01-01"}}, "invalid ticker 'enrn'"),
    ],
)
def test_malformed_membership_is_refused_naming_the_ticker(entry, message):
    with pytest.raises(ValueError, match=message):
        UniverseSettings.model_validate({**BASE, "tickers": ["AAA", entry]})


def test_bars_and_every_cross_section_hold_only_the_members_of_their_date(tmp_path):
    project = write_strategies(
        write_project(
            tmp_path,
            ["AAA", "BBB", "ENRN", "NEWCO"],
            date(2015, 1, 1),
            date(2019, 12, 31),
            grain="year",
        ),
        ["trend_only"],
    )
    path = project.config_dir / "universe.yaml"
    universe = yaml.safe_load(path.read_text())
    # The provider has every name's full history; membership decides what is kept. ENRN
    # leaves in March 2018 while the strategy holds it (no bars in 2019: a whole empty
    # window), NEWCO joins in 2016.
    universe["tickers"] = [
        "AAA",
        "BBB",
        {"ENRN": {"to": "2018-03-14"}},
        {"NEWCO": {"from": "2016-03-01"}},
    ]
    path.write_text(yaml.safe_dump(universe))
    materialize_all(project, ["trend_only/orders", "trend_only/backtest"])
    with duckdb.connect(str(project.home / "warehouse.duckdb"), read_only=True) as conn:
        spans = dict(
            (t, (lo, hi))
            for t, lo, hi in conn.sql(
                "select ticker, min(date), max(date) from market.bars group by ticker"
            ).fetchall()
        )
        assert spans["ENRN"][1] == date(2018, 3, 14)
        assert spans["NEWCO"][0] == date(2016, 3, 1)
        assert spans["AAA"] == (date(2015, 1, 2), date(2019, 12, 31))
        for table in ("market.signals", "trend_only.alpha_scores"):
            outside = conn.sql(
                f"select count(*) from {table} where (ticker = 'ENRN' and date > '2018-03-14') "
                "or (ticker = 'NEWCO' and date < '2016-03-01')"
            ).fetchone()
            assert outside == (0,), table
        held = conn.sql(
            "select count(*) from trend_only.positions where ticker = 'ENRN' "
            "and date > '2018-03-14' and target_weight <> 0"
        ).fetchone()
        assert held == (0,)
        codes = conn.sql(
            "select distinct reason_codes like '[\"LEFT_UNIVERSE:2018-03-14\"%' "
            "from trend_only.positions where ticker = 'ENRN' and date > '2018-03-14'"
        ).fetchall()
        assert codes == [(True,)]
        # Whatever was held at the exit is sold at the last close on the second session
        # after it, in the backtest and in the paper book alike; nothing is held later.
        last_close = conn.sql(
            "select close from market.bars where ticker = 'ENRN' and date = '2018-03-14'"
        ).fetchone()
        for book in ("trend_only.backtest", "trend_only.paper_book"):
            later = conn.sql(
                f"select count(*) filter (where shares <> 0), max(date) from {book} "
                "where ticker = 'ENRN' and date >= '2018-03-16'"
            ).fetchone()
            assert later is not None and later[0] == 0 and later[1] == date(2019, 12, 31), book
        sale = conn.sql(
            "select date, trade_quantity, fill_price from trend_only.backtest "
            "where ticker = 'ENRN' and date = '2018-03-16'"
        ).fetchone()
        held_at_exit = conn.sql(
            "select shares from trend_only.backtest where ticker = 'ENRN' and date = '2018-03-14'"
        ).fetchone()
        assert sale is not None and held_at_exit is not None and last_close is not None
        assert sale[1] == -held_at_exit[0]
        assert held_at_exit[0] > 0  # the case that matters: a position open at the exit
        assert sale[2] == pytest.approx(last_close[0], rel=1e-3)  # less the usual costs


def test_reports_say_when_the_history_is_survivors_only(tmp_path):
    from quant_assets.engine.reporting import survivorship_notes
    from quant_assets.settings import load_settings
    from quant_assets_tests.conftest import SHIPPED_CONFIGS

    shipped = survivorship_notes(load_settings(SHIPPED_CONFIGS))
    assert any("today's S&P 500 constituents" in note for note in shipped)
    assert any("no membership dates" in note for note in shipped)
    project = write_project(tmp_path, ["AAA", "ENRN"], date(2015, 1, 1), date(2019, 12, 31))
    path = project.config_dir / "universe.yaml"
    universe = yaml.safe_load(path.read_text())
    universe["tickers"] = ["AAA", {"ENRN": {"to": "2018-03-14"}}]
    path.write_text(yaml.safe_dump(universe))
    assert survivorship_notes(load_settings(project.config_dir)) == []
