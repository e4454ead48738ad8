"""The Dagster UI really loads our code location: a live webserver answers GraphQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

from quant_assets.engine.instance import dagster_home

REPO = Path(__file__).resolve().parents[2]
QUERY = "{ assetNodes { assetKey { path } isPartitioned hasAssetChecks } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_webserver_on_localhost_serves_the_asset_graph(make_project):
    project = make_project(["AAA", "BBB"], date(2020, 1, 1), date(2020, 3, 31))
    port = free_port()
    env = {
        **os.environ,
        "QUANT_ASSETS_CONFIG": str(project.config_dir),
        "QUANT_ASSETS_HOME": str(project.home),
        "DAGSTER_HOME": str(dagster_home(project.home)),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(REPO / "workspace.yaml"),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        nodes = None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and server.poll() is None:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/graphql",
                data=json.dumps({"query": QUERY}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    payload = json.loads(response.read())
                nodes = payload.get("data", {}).get("assetNodes")
                if nodes:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        assert nodes, f"webserver never served asset nodes (exit={server.poll()})"
        by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert {"bars", "benchmark_bars", "features", "signals"} <= set(by_key)
        assert {"regimes", "next_state_model", "predictions"} <= set(by_key)
        partitioned = ("bars", "benchmark_bars", "features", "signals", "regimes", "predictions")
        assert all(by_key[name]["isPartitioned"] for name in partitioned)
        assert not by_key["signal_evaluation"]["isPartitioned"]  # a whole-history summary
        checked = ("bars", "benchmark_bars", "features", "signals", "regimes", "predictions")
        assert all(by_key[name]["hasAssetChecks"] for name in checked)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
