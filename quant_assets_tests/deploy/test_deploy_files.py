"""The Dockerfile and docker-compose.yml: parsed (no Docker daemon here), their entry points
and files exist, servers are published on 127.0.0.1 only, and no secret is committed."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DAGSTER_SERVICES = ("code_location", "webserver", "daemon")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line[:-1].strip()}" if line.endswith("\\") else f"{current} {line}"
        if not line.endswith("\\"):
            instruction, _, arguments = current.strip().partition(" ")
            lines.append((instruction.upper(), arguments.strip()))
            current = ""
    return lines


def test_the_dockerfile_copies_files_that_exist_and_runs_as_a_non_root_user():
    instructions = dockerfile_instructions()
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for i, a in instructions if i == "ARG"}
    for instruction, arguments in instructions:
        if instruction == "COPY":
            *sources, _ = shlex.split(arguments)
            for source in sources:
                source = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], source)
                assert (REPO / source).exists(), f"COPY {source}: no such file"
    users = [a for i, a in instructions if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert instructions[0][0] in ("FROM", "ARG")
    # The production profile's storage file, selectable by the build argument, exists too.
    assert (REPO / "deploy" / "storage.yaml").exists()


def test_the_compose_services_run_the_real_entry_points():
    location = SERVICES["code_location"]["command"]
    module = location[location.index("-m") + 1]
    assert module == "quant_assets.defs.definitions"
    assert importlib.util.find_spec(module) is not None
    assert location[:3] == ["dagster", "code-server", "start"]
    assert SERVICES["webserver"]["command"][0] == "dagster-webserver"
    assert SERVICES["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    workspace = yaml.safe_load((REPO / "deploy" / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    assert server["host"] == "code_location"
    assert str(server["port"]) == location[location.index("-p") + 1]
    build = SERVICES["code_location"]["build"]
    assert (REPO / build["dockerfile"]).exists()
    assert (REPO / build["args"]["STORAGE_PROFILE"]).exists()


def test_the_files_compose_mounts_exist_and_match_the_instance_config():
    for name in DAGSTER_SERVICES:
        for volume in SERVICES[name].get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
    instance = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    launcher = instance["run_launcher"]["config"]
    assert launcher["network"] in {n.get("name") for n in COMPOSE["networks"].values()}
    run_volume = launcher["container_kwargs"]["volumes"][0].split(":")[0]
    assert run_volume in {(v or {}).get("name") for v in COMPOSE["volumes"].values()}
    # Every variable the launcher forwards to run containers is set on the daemon.
    daemon_env = SERVICES["daemon"]["environment"]
    assert set(launcher["env_vars"]) <= set(daemon_env)


def test_ports_are_published_on_the_loopback_only():
    published = []
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            published.append(name)
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all hosts"
    assert published == ["webserver"]  # PostgreSQL and the gRPC server stay on the network


def test_no_secret_values_are_committed():
    texts = {
        path: (REPO / path).read_text()
        for path in (
            "docker-compose.yml",
            "Dockerfile",
            "deploy/dagster.yaml",
            "deploy/storage.yaml",
            "configs/storage.yaml",
        )
    }
    for path, text in texts.items():
        for line in text.splitlines():
            match = re.search(r"(?i)password\w*\s*[:=]\s*(\S+)", line.split("#")[0])
            if match:
                value = match.group(1)
                allowed = value.startswith("${") or value in ("", "|") or value.isupper()
                assert allowed, f"{path}: {line.strip()!r} looks like a committed secret"
    # Secrets have no defaults in compose: `${VAR:?message}` fails when unset.
    assert "${POSTGRES_PASSWORD:?" in texts["docker-compose.yml"]
    assert ":-" not in "".join(
        line for line in texts["docker-compose.yml"].splitlines() if "PASSWORD" in line
    )
    dagster_env = SERVICES["webserver"]["environment"]
    assert dagster_env["DAGSTER_POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
