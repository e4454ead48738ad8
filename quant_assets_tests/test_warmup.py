"""The warm-up drops numba's cached kernels whenever any source of the package changed: numba
keys a cache entry on the function's own file only, so a caller would keep a stale callee."""

from pathlib import Path

from quant_assets.warmup import STAMP_NAME, clear_stale_cache


def _package(root: Path) -> Path:
    package = root / "pkg"
    (package / "sub" / "__pycache__").mkdir(parents=True)
    (package / "kernel.py").write_text("x = 1\n")
    (package / "sub" / "caller.py").write_text("y = 2\n")
    return package


def _cache_files(package: Path) -> list[Path]:
    files = [package / "sub" / "__pycache__" / f"caller.f-10.py311.{ext}" for ext in ("nbi", "nbc")]
    for path in files:
        path.write_bytes(b"cached")
    return files


def test_first_warmup_drops_every_cached_kernel_and_writes_the_stamp(tmp_path):
    package = _package(tmp_path)
    files = _cache_files(package)
    assert clear_stale_cache(package) == 2
    assert not any(path.exists() for path in files)
    assert (package / "__pycache__" / STAMP_NAME).exists()


def test_unchanged_sources_keep_the_cache(tmp_path):
    package = _package(tmp_path)
    clear_stale_cache(package)
    files = _cache_files(package)
    assert clear_stale_cache(package) == 0
    assert all(path.exists() for path in files)


def test_a_change_to_another_module_drops_the_callers_cache(tmp_path):
    package = _package(tmp_path)
    clear_stale_cache(package)
    files = _cache_files(package)
    (package / "kernel.py").write_text("x = 2\n")  # the callee changed, the caller did not
    assert clear_stale_cache(package) == 2
    assert not any(path.exists() for path in files)
