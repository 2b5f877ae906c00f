"""docker-compose.yml: no Docker engine here, so check the file itself and that its commands parse."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docker-compose.yml")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def _published(port) -> str:
    """The host side of a port mapping, in short ("127.0.0.1:8080:8080") or long syntax."""
    if isinstance(port, dict):
        return f"{port.get('host_ip', '')}:{port.get('published', '')}"
    return str(port)


def test_services_present(services):
    assert {"postgres", "suppliers", "nas"} <= set(services)


def test_every_published_port_is_bound_to_loopback(services):
    for name, service in services.items():
        assert service.get("network_mode") != "host", name
        for port in service.get("ports", []):
            assert _published(port).startswith("127.0.0.1:"), (name, port)


def test_every_service_has_a_healthcheck(services):
    for name, service in services.items():
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), name


def test_built_images_use_an_existing_dockerfile(services):
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (ROOT / build.get("context", ".") / build["dockerfile"]).is_file(), name


def test_service_commands_match_the_real_command_lines(services, tmp_path):
    from harness.services import nas, suppliers

    command = services["suppliers"]["command"]
    assert command[:3] == ["python", "-m", "harness.services.suppliers"]
    args = command[3:]
    args[args.index("--data-dir") + 1] = str(tmp_path)  # /data exists only in the container
    cfg = suppliers.parse_args(args)
    assert cfg.port == 8080 and cfg.host == "0.0.0.0"

    command = services["nas"]["command"]
    assert command[:3] == ["python", "-m", "harness.services.nas"]
    parsed = nas._parser().parse_args(command[3:])
    assert parsed.command == "mount" and parsed.max_threads > 10
