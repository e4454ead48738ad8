"""Cut-off windows: the model of cut-off c serves [c, next cut-off), clipped to the run."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from quant_assets.models.cutoffs import CutoffWindow, cutoff_windows, days_for_sessions

Q1, Q2, Q3, Q4 = date(2020, 1, 1), date(2020, 4, 1), date(2020, 7, 1), date(2020, 10, 1)
NEXT_YEAR = date(2021, 1, 1)


def test_each_date_uses_the_model_whose_window_holds_it():
    assert cutoff_windows([Q1, Q2, Q3], Q1, NEXT_YEAR) == [
        CutoffWindow(Q1, Q1, Q2),
        CutoffWindow(Q2, Q2, Q3),
        CutoffWindow(Q3, Q3, NEXT_YEAR),
    ]


def test_the_last_window_ends_at_the_runs_end():
    assert cutoff_windows([Q1], Q1, date(2020, 2, 1)) == [CutoffWindow(Q1, Q1, date(2020, 2, 1))]
    assert cutoff_windows([Q1, Q2], Q1, NEXT_YEAR)[-1] == CutoffWindow(Q2, Q2, NEXT_YEAR)


def test_windows_are_clipped_to_the_run():
    # A run of February..August: the Q1 window starts late, the Q3 one ends early.
    assert cutoff_windows([Q1, Q2, Q3, Q4], date(2020, 2, 1), date(2020, 8, 1)) == [
        CutoffWindow(Q1, date(2020, 2, 1), Q2),
        CutoffWindow(Q2, Q2, Q3),
        CutoffWindow(Q3, Q3, date(2020, 8, 1)),
    ]


def test_windows_that_miss_the_run_are_dropped():
    # Q1 ends where the run starts, Q4 starts after it ends.
    assert cutoff_windows([Q1, Q2, Q3, Q4], Q2, date(2020, 9, 1)) == [
        CutoffWindow(Q2, Q2, Q3),
        CutoffWindow(Q3, Q3, date(2020, 9, 1)),
    ]
    assert cutoff_windows([Q4], Q1, Q4) == []
    assert cutoff_windows([Q1, Q2], Q3, Q4) == [CutoffWindow(Q2, Q3, Q4)]


def test_dates_before_the_first_cutoff_belong_to_no_window():
    windows = cutoff_windows([Q2, Q3], Q1, NEXT_YEAR)
    assert windows[0] == CutoffWindow(Q2, Q2, Q3)
    assert cutoff_windows([], Q1, NEXT_YEAR) == []


def test_unsorted_cutoffs_are_refused_naming_the_pair():
    with pytest.raises(ValueError, match="2020-04-01 comes after 2020-07-01"):
        cutoff_windows([Q1, Q3, Q2], Q1, NEXT_YEAR)


def test_a_repeated_cutoff_serves_its_window_once():
    assert cutoff_windows([Q1, Q2, Q2, Q3], Q1, NEXT_YEAR) == [
        CutoffWindow(Q1, Q1, Q2),
        CutoffWindow(Q2, Q2, Q3),
        CutoffWindow(Q3, Q3, NEXT_YEAR),
    ]


def test_an_empty_run_has_no_windows():
    assert cutoff_windows([Q1, Q2], Q2, Q2) == []


def test_days_for_sessions_is_the_calendar_margin_the_asset_layer_reads_with():
    assert days_for_sessions(0) == timedelta(days=30)
    assert days_for_sessions(252) == timedelta(days=int(252 * 1.6) + 30)
