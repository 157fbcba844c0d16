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


def test_the_compose_server_command_parses_and_points_the_ledger_at_postgres() -> None:
    service = compose()["services"]["hogx"]
    args = build_parser().parse_args(service["command"])
    assert args.command == "serve"
    assert args.database_url.startswith("postgresql+psycopg://")
    assert "@postgres:" in args.database_url
    assert "postgres" in service["depends_on"]


def test_the_journal_lives_on_a_named_volume_at_the_data_dir() -> None:
    spec = compose()
    service = spec["services"]["hogx"]
    args = build_parser().parse_args(service["command"])
    mounts = dict(volume.split(":", 1) for volume in service["volumes"])
    assert mounts.get("journal") == str(args.data_dir)
    assert "journal" in spec["volumes"]


def test_the_healthchecks_ask_hogx_healthz_and_postgres_readiness() -> None:
    services = compose()["services"]
    assert "/healthz" in " ".join(services["hogx"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/healthz" in (REPO / "Dockerfile").read_text()


def test_the_operator_key_comes_from_the_environment_not_the_file() -> None:
    environment = compose()["services"]["hogx"]["environment"]
    assert environment["HOGX_OPERATOR_KEY"].startswith("${HOGX_OPERATOR_KEY")
