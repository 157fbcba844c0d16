"""The deployment files agree with the code: every command and option they use exists."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from exchange.cli import build_parser

REPO = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def dockerfile_instruction(name: str) -> list[str]:
    """The JSON (exec) form of a Dockerfile instruction, e.g. CMD or ENTRYPOINT."""
    text = (REPO / "Dockerfile").read_text()
    match = re.search(rf"^{name}\s+(\[.*\])\s*$", text, re.MULTILINE)
    assert match, f"Dockerfile has no exec-form {name}"
    parsed: list[str] = json.loads(match.group(1))
    return parsed


def test_the_image_runs_hogx_serve_with_options_the_cli_accepts() -> None:
    assert dockerfile_instruction("ENTRYPOINT") == ["hogx"]
    args = build_parser().parse_args(dockerfile_instruction("CMD"))
    assert args.command == "serve"
    assert str(args.data_dir) == "/var/lib/hogx"


def test_the_image_installs_every_package_of_the_project() -> None:
    text = (REPO / "Dockerfile").read_text()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in (p.rstrip("*") for p in packages):
        assert f"COPY {package} ./{package}" in text, package


def services_running(command: str) -> dict[str, dict[str, Any]]:
    """The compose services whose command is `hogx <command>`."""
    services: dict[str, dict[str, Any]] = compose()["services"]
    return {
        name: service
        for name, service in services.items()
        if service.get("command", [None])[0] == command
    }


def test_the_cluster_has_three_nats_nodes_with_jetstream_routed_to_each_other() -> None:
    services = compose()["services"]
    nats_nodes = [name for name in services if name.startswith("nats-")]
    assert len(nats_nodes) == 3
    for name in nats_nodes:
        command = services[name]["command"]
        assert "--jetstream" in command and command[command.index("--name") + 1] == name
        routes = command[command.index("--routes") + 1]
        assert {f"nats://{other}:6222" for other in nats_nodes if other != name} == set(
            routes.split(",")
        )


def test_each_shard_has_a_leader_and_a_standby_on_a_three_replica_stream() -> None:
    parsed = [build_parser().parse_args(s["command"]) for s in services_running("serve").values()]
    nodes_of: dict[tuple[str, int], int] = {}
    for args in parsed:
        nodes_of[(args.shard, args.shard_index)] = (
            nodes_of.get((args.shard, args.shard_index), 0) + 1
        )
        assert args.stream_replicas == 3
        assert all(f"nats-{n}:4222" in args.nats_url for n in (1, 2, 3))
        assert args.database_url.startswith("postgresql+psycopg://")
        assert "@postgres:" in args.database_url
    assert nodes_of == {("main", 0): 2, ("ocop", 1): 2}
    assert len({args.database_url for args in parsed}) == 4, "each node keeps its own ledger"
    init = (REPO / "deploy" / "postgres-init.sql").read_text()
    for args in parsed:
        database = args.database_url.rsplit("/", 1)[1]
        assert (
            database in init
            or database == compose()["services"]["postgres"]["environment"]["POSTGRES_DB"]
        )


def test_two_gateways_front_both_shards_and_place_ocop_goods_on_their_shard() -> None:
    gateways = services_running("gateway")
    assert len(gateways) == 2
    for service in gateways.values():
        args = build_parser().parse_args(service["command"])
        assert args.shard == ["main", "ocop"] and "nats-1:4222" in args.nats_url
        assert args.assign == ["OCOP-*=ocop"]
    ports = [service["ports"][0].split(":")[0] for service in gateways.values()]
    assert len(set(ports)) == 2


def test_each_engine_keeps_its_journal_mirror_on_a_named_volume_at_the_data_dir() -> None:
    spec = compose()
    for service in services_running("serve").values():
        args = build_parser().parse_args(service["command"])
        volume, path = service["volumes"][0].split(":", 1)
        assert path == str(args.data_dir)
        assert volume in spec["volumes"]


def test_the_healthchecks_ask_hogx_healthz_and_postgres_and_nats_readiness() -> None:
    services = compose()["services"]
    for name in (*services_running("serve"), *services_running("gateway")):
        assert "/healthz" in " ".join(services[name]["healthcheck"]["test"]), name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "js-enabled-only" in " ".join(services["nats-1"]["healthcheck"]["test"])
    assert "/healthz" in (REPO / "Dockerfile").read_text()


def test_the_operator_key_comes_from_the_environment_not_the_file() -> None:
    for service in services_running("serve").values():
        assert service["environment"]["HOGX_OPERATOR_KEY"].startswith("${HOGX_OPERATOR_KEY")
