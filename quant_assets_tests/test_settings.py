"""Specification of the settings: typed, validated once, every problem a ConfigError.

A ConfigError's message names the file, the key and the problem, so a user can fix the
config without reading code.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from quant_assets.errors import ConfigError, QuantAssetsError
from quant_assets.settings import (
    CONFIG_ENV,
    DEFAULT_CONFIG_DIR,
    FeatureSettings,
    QualitySettings,
    SignalSettings,
    load_settings,
    resolve_config_dir,
)

UNIVERSE = """\
tickers: [AAPL, MSFT]
benchmark: SP500
start: 2020-01-01
end: 2020-12-31
"""
PROVIDERS = "provider: bundled\n"


def write_configs(directory: Path, **files: str | None) -> Path:
    """A config dir with a minimal valid universe/providers; ``files`` override or drop them.

    Keyword names are file stems (``universe=...`` writes ``universe.yaml``); ``None`` omits it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    contents: dict[str, str | None] = {"universe": UNIVERSE, "providers": PROVIDERS, **files}
    for stem, text in contents.items():
        if text is not None:
            (directory / f"{stem}.yaml").write_text(text)
    return directory


def config_error(directory: Path) -> ConfigError:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(directory)
    return excinfo.value


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's shell must not choose the config dir of these tests.
    monkeypatch.delenv(CONFIG_ENV, raising=False)


# --- where the config comes from -------------------------------------------------------------


def test_the_repository_configs_load() -> None:
    settings = load_settings()
    assert settings.config_dir == DEFAULT_CONFIG_DIR.resolve()
    universe = settings.universe
    assert len(universe.tickers) == 20
    assert "AAPL" in universe.tickers
    assert universe.benchmark == "SP500"
    assert universe.benchmark not in universe.tickers
    assert universe.start == date(1990, 1, 1)
    assert universe.end == date(2022, 12, 31)
    assert universe.calendar == "XNYS"
    assert universe.partition_grain == "year"  # the shipped 33-year universe
    assert settings.providers.provider == "bundled"
    # The files path in providers.yaml is relative: it resolves against configs/.
    assert settings.providers.files is not None
    assert settings.providers.files.path == (DEFAULT_CONFIG_DIR / "../data/drop").resolve()
    assert settings.features.momentum_skip < settings.features.momentum_lookback
    assert settings.quality.return_spike_threshold == 0.40
    assert settings.quality.min_quality_score == 0.6


def test_a_config_dir_given_as_argument(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg")
    settings = load_settings(directory)
    assert settings.config_dir == directory.resolve()
    assert settings.universe.tickers == ["AAPL", "MSFT"]
    assert settings.universe.start == date(2020, 1, 1)
    assert settings.universe.end == date(2020, 12, 31)
    # Optional files absent: their defaults apply.
    assert settings.features == FeatureSettings()
    assert settings.signals == SignalSettings()
    assert settings.quality == QualitySettings()


def test_a_config_dir_given_as_a_string(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg")
    assert load_settings(str(directory)).config_dir == directory.resolve()


def test_a_config_dir_chosen_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = write_configs(tmp_path / "from_env", universe=UNIVERSE.replace("MSFT", "KO"))
    monkeypatch.setenv(CONFIG_ENV, str(directory))
    assert resolve_config_dir() == directory.resolve()
    settings = load_settings()
    assert settings.config_dir == directory.resolve()
    assert settings.universe.tickers == ["AAPL", "KO"]


def test_the_argument_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = write_configs(tmp_path / "from_env")
    chosen = write_configs(tmp_path / "chosen")
    monkeypatch.setenv(CONFIG_ENV, str(from_env))
    assert load_settings(chosen).config_dir == chosen.resolve()


def test_without_argument_or_environment_the_repository_configs_are_used() -> None:
    assert resolve_config_dir() == DEFAULT_CONFIG_DIR.resolve()


def test_a_missing_config_dir_is_a_config_error(tmp_path: Path) -> None:
    error = config_error(tmp_path / "nowhere")
    assert "nowhere" in str(error)
    assert "does not exist" in str(error)


def test_optional_files_are_read_when_present(tmp_path: Path) -> None:
    directory = write_configs(
        tmp_path / "cfg",
        quality="return_spike_threshold: 0.25\nmin_quality_score: 0.9\n",
        signals="trend_momentum_scale: 2.5\n",
        features="momentum_lookback: 126\nmomentum_skip: 5\n",
    )
    settings = load_settings(directory)
    assert settings.quality == QualitySettings(return_spike_threshold=0.25, min_quality_score=0.9)
    assert settings.signals.trend_momentum_scale == 2.5
    assert settings.features.momentum_lookback == 126
    assert settings.features.momentum_skip == 5


def test_an_empty_optional_file_means_all_defaults(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg", quality="", features="# nothing here\n")
    settings = load_settings(directory)
    assert settings.quality == QualitySettings()
    assert settings.features == FeatureSettings()


def test_end_may_be_left_open(tmp_path: Path) -> None:
    universe = "tickers: [AAPL]\nbenchmark: SP500\nstart: 2020-01-01\n"
    settings = load_settings(write_configs(tmp_path / "cfg", universe=universe))
    assert settings.universe.end is None


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write_configs(tmp_path / "cfg"))
    with pytest.raises(ValueError):
        settings.universe.start = date(2000, 1, 1)  # type: ignore[misc]


# --- the files provider path ------------------------------------------------------------------


def test_a_relative_files_path_resolves_against_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = write_configs(
        tmp_path / "project" / "cfg", providers="provider: files\nfiles:\n  path: ../drop\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the shell's cwd must not matter
    settings = load_settings(directory)
    assert settings.providers.provider == "files"
    assert settings.providers.files is not None
    assert settings.providers.files.path == (tmp_path / "project" / "drop").resolve()
    assert settings.providers.files.path.is_absolute()


def test_an_absolute_files_path_is_kept(tmp_path: Path) -> None:
    drop = tmp_path / "somewhere" / "drop"
    directory = write_configs(
        tmp_path / "cfg", providers=f"provider: files\nfiles:\n  path: {drop}\n"
    )
    settings = load_settings(directory)
    assert settings.providers.files is not None
    assert settings.providers.files.path == drop


# --- every problem is a ConfigError naming file, key and problem ------------------------------


def assert_names(error: ConfigError, file_name: str, *fragments: str) -> None:
    message = str(error)
    assert file_name in message, message
    assert Path(error.file).name == file_name
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_config_error_is_a_package_error() -> None:
    error = ConfigError("universe.yaml", "start", "bad")
    assert isinstance(error, QuantAssetsError)
    assert str(error) == "universe.yaml: start: bad"
    assert (error.file, error.key, error.problem) == ("universe.yaml", "start", "bad")


def test_malformed_yaml(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg", universe="tickers: [AAPL\nbenchmark: SP500\n")
    error = config_error(directory)
    assert_names(error, "universe.yaml", "malformed YAML")
    assert error.key.startswith("line ")


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg", universe="- AAPL\n- MSFT\n")
    assert_names(config_error(directory), "universe.yaml", "mapping")


@pytest.mark.parametrize("file_name", ["universe.yaml", "providers.yaml"])
def test_a_missing_required_file(tmp_path: Path, file_name: str) -> None:
    directory = write_configs(tmp_path / "cfg", **{file_name.removesuffix(".yaml"): None})
    error = config_error(directory)
    assert_names(error, file_name, "missing")


def test_an_unknown_key(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg", universe=UNIVERSE + "colour: blue\n")
    error = config_error(directory)
    assert_names(error, "universe.yaml", "colour", "unknown key")
    assert error.key == "colour"


def test_an_unknown_nested_key(tmp_path: Path) -> None:
    directory = write_configs(
        tmp_path / "cfg", providers="provider: files\nfiles:\n  path: drop\n  glob: '*.csv'\n"
    )
    error = config_error(directory)
    assert_names(error, "providers.yaml", "files.glob", "unknown key")


def test_an_unknown_key_in_an_optional_file(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg", quality="min_score: 0.5\n")
    assert_names(config_error(directory), "quality.yaml", "min_score", "unknown key")


def test_a_wrong_type(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg", universe=UNIVERSE.replace("2020-01-01", "notadate"))
    error = config_error(directory)
    assert_names(error, "universe.yaml", "start", "date")
    assert error.key == "start"


def test_a_wrong_type_in_a_list(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg", features="ma_windows: [20, fifty, 200]\n")
    error = config_error(directory)
    assert_names(error, "features.yaml", "ma_windows", "integer")


def test_an_out_of_range_value(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg", quality="min_quality_score: 1.5\n")
    assert_names(config_error(directory), "quality.yaml", "min_quality_score", "less than")


def test_an_invalid_ticker(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg", universe=UNIVERSE.replace("MSFT", "msft"))
    error = config_error(directory)
    assert_names(error, "universe.yaml", "tickers", "invalid ticker", "'msft'")
    assert error.key == "tickers.1"  # the position in the list


def test_an_invalid_benchmark(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg", universe=UNIVERSE.replace("SP500", "'../etc'"))
    assert_names(config_error(directory), "universe.yaml", "benchmark", "invalid ticker")


def test_an_empty_universe(tmp_path: Path) -> None:
    directory = write_configs(tmp_path / "cfg", universe=UNIVERSE.replace("[AAPL, MSFT]", "[]"))
    assert_names(config_error(directory), "universe.yaml", "tickers", "at least 1")


def test_duplicate_tickers(tmp_path: Path) -> None:
    universe = UNIVERSE.replace("[AAPL, MSFT]", "[AAPL, MSFT, AAPL]")
    error = config_error(write_configs(tmp_path / "cfg", universe=universe))
    assert_names(error, "universe.yaml", "duplicate tickers", "AAPL")


def test_the_benchmark_inside_the_tickers(tmp_path: Path) -> None:
    error = config_error(
        write_configs(tmp_path / "cfg", universe=UNIVERSE.replace("SP500", "MSFT"))
    )
    assert_names(error, "universe.yaml", "benchmark", "MSFT", "must not also be a universe ticker")


def test_end_before_start(tmp_path: Path) -> None:
    universe = UNIVERSE.replace("end: 2020-12-31", "end: 2019-06-30")
    error = config_error(write_configs(tmp_path / "cfg", universe=universe))
    assert_names(error, "universe.yaml", "end", "2019-06-30", "before start", "2020-01-01")


def test_an_unknown_partition_grain(tmp_path: Path) -> None:
    universe = UNIVERSE + "partition_grain: week\n"
    error = config_error(write_configs(tmp_path / "cfg", universe=universe))
    assert_names(error, "universe.yaml", "partition_grain", "'month'")


@pytest.mark.parametrize("calendar", ["XNYS", "XLON", "NYSE"])
def test_any_exchange_calendar_or_alias_is_accepted(tmp_path: Path, calendar: str) -> None:
    universe = UNIVERSE + f"calendar: {calendar}\n"
    assert load_settings(write_configs(tmp_path / "cfg", universe=universe)).universe.calendar == (
        calendar
    )


def test_an_unknown_calendar_is_refused_before_anything_runs(tmp_path: Path) -> None:
    universe = UNIVERSE + "calendar: NOPE\n"
    error = config_error(write_configs(tmp_path / "cfg", universe=universe))
    assert_names(error, "universe.yaml", "calendar", "NOPE")


@pytest.mark.parametrize(
    "providers",
    ["provider: files\n", "provider: files\nfiles:\n"],
    ids=["no files section", "empty files section"],
)
def test_the_files_provider_without_a_section(tmp_path: Path, providers: str) -> None:
    error = config_error(write_configs(tmp_path / "cfg", providers=providers))
    assert_names(error, "providers.yaml", "files", "path")


def test_the_files_provider_without_a_path(tmp_path: Path) -> None:
    providers = "provider: files\nfiles:\n  folder: drop\n"
    error = config_error(write_configs(tmp_path / "cfg", providers=providers))
    # The missing path is reported first; the unknown 'folder' key is counted.
    assert_names(error, "providers.yaml", "files.path", "required", "1 more problem(s)")


def test_the_files_provider_with_an_empty_path_mapping(tmp_path: Path) -> None:
    providers = "provider: files\nfiles: {}\n"
    error = config_error(write_configs(tmp_path / "cfg", providers=providers))
    assert_names(error, "providers.yaml", "files.path", "required")


def test_an_unknown_provider(tmp_path: Path) -> None:
    error = config_error(write_configs(tmp_path / "cfg", providers="provider: polygon\n"))
    assert_names(error, "providers.yaml", "provider", "'bundled'")
    assert error.key == "provider"


@pytest.mark.parametrize("skip", [21, 30])
def test_momentum_skip_not_below_lookback(tmp_path: Path, skip: int) -> None:
    features = f"momentum_lookback: 21\nmomentum_skip: {skip}\n"
    error = config_error(write_configs(tmp_path / "cfg", features=features))
    assert_names(error, "features.yaml", "momentum_skip", "momentum_lookback", "smaller")


def test_ma_windows_must_keep_the_windows_the_signals_use(tmp_path: Path) -> None:
    error = config_error(write_configs(tmp_path / "cfg", features="ma_windows: [10, 20, 50]\n"))
    assert_names(error, "features.yaml", "ma_windows", "200")


def test_a_non_positive_window(tmp_path: Path) -> None:
    error = config_error(write_configs(tmp_path / "cfg", features="atr_window: 0\n"))
    assert_names(error, "features.yaml", "atr_window", "greater than or equal to 1")


def test_several_problems_report_the_first_and_count_the_rest(tmp_path: Path) -> None:
    features = "atr_window: 0\nbeta_window: -1\n"
    error = config_error(write_configs(tmp_path / "cfg", features=features))
    assert_names(error, "features.yaml", "atr_window", "1 more problem(s)")
