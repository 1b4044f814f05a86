"""The ``messages-gateway-client`` distribution: a wheel, built from clients/, of the
``messages_gateway_client`` package and its generated code that imports and works with nothing of
the gateway around."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

CLIENTS = Path(__file__).resolve().parents[2] / "clients"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy: an in-tree build would leave build/ and *.egg-info in clients/.
    work = tmp_path_factory.mktemp("dist")
    shutil.copytree(CLIENTS, work / "clients",
                    ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info",
                                                  "node_modules"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         str(work / "clients"), "-w", str(work / "wheels")],
        check=True, capture_output=True, timeout=120,
    )
    (built,) = (work / "wheels").glob("messages_gateway_client-*.whl")
    return built


def test_client_wheel_contains_the_package_and_the_generated_code(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("__init__", "__main__", "_sync", "_async", "_resume", "_errors", "cli",
                   "generated/messages_gateway/v1/messages_pb2",
                   "generated/messages_gateway/v1/messages_pb2_grpc"):
        assert f"messages_gateway_client/{module}.py" in names
    assert "messages_gateway_client/generated/messages_gateway/v1/messages_pb2.pyi" in names
    assert "messages_gateway_client/py.typed" in names
    assert "messages_gateway_client/generated/messages_gateway.binpb" in names
    # One top-level package: nothing of the gateway, of the Node consumer or of a `clients` one.
    packages = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert packages == {"messages_gateway_client"}
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line.split(":", 1)[1].strip()
                for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    assert sorted(re.split(r"[<>=!~;, ]", r)[0] for r in requires) == [
        "googleapis-common-protos", "grpcio", "protobuf"]


def run_from_wheel(wheel: Path, tmp_path: Path, code: str) -> str:
    """``code`` in a fresh interpreter that sees only the unpacked wheel and the third-party
    packages: -S (no site processing) keeps the repository's editable install (a .pth file) off
    the path. Returns its stdout."""
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    site_packages = sysconfig.get_paths()["purelib"]
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import sys; sys.path[:0] = sys.argv[1:3]\n" + code,
         str(unpacked), site_packages],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_client_wheel_imports_without_the_gateway(wheel: Path, tmp_path: Path) -> None:
    out = run_from_wheel(wheel, tmp_path, (
        "import messages_gateway_client as client, messages_gateway_client.cli\n"
        "assert client.__file__.startswith(sys.argv[1]), client.__file__\n"
        "from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb\n"
        "c = client.MessagesGatewayClient('127.0.0.1:1'); c.close()\n"
        "assert pb.Message(id='msg_1').id == 'msg_1'\n"
        "try:\n    import gateway\nexcept ImportError:\n    print('no-gateway')\n"
    ))
    assert out.strip() == "no-gateway"


def test_client_wheel_console_script_runs_the_cli(wheel: Path, tmp_path: Path) -> None:
    """``messages-gateway``, the wheel's console script, is the CLI (loaded from the wheel's own
    metadata, as the script pip writes does)."""
    out = run_from_wheel(wheel, tmp_path, (
        "from importlib.metadata import distribution\n"
        "(script,) = [e for e in distribution('messages-gateway-client').entry_points\n"
        "             if e.group == 'console_scripts']\n"
        "print(script.name, script.value)\n"
        "sys.exit(script.load()(['--help']))\n"
    ))
    first, usage = out.split("\n", 1)
    assert first == "messages-gateway messages_gateway_client.cli:main"
    assert "usage:" in usage and "{messages,threads}" in usage
