"""deploy/Dockerfile and its lock files: the dependency layer comes before the source, every
dependency is installed from a lock with hashes, the production image has no emulator or demo
(built here the way the Dockerfile builds it, without Docker), and the base image is pinned by
digest."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
LOCK = ROOT / "deploy" / "requirements.lock"
BUILD_LOCK = ROOT / "deploy" / "build-requirements.lock"


def instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def stage(name: str) -> list[str]:
    lines = instructions()
    start = next(i for i, line in enumerate(lines)
                 if line.upper().startswith("FROM ") and line.endswith(f" AS {name}"))
    end = next((i for i, line in enumerate(lines[start + 1:], start + 1)
                if line.upper().startswith("FROM ")), len(lines))
    return lines[start:end]


def locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name → (version, hashes) of a pip-compile lock."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)\s+(.*)$", line)
        if m:
            found[m.group(1).lower()] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})",
                                                                 m.group(3)))
    return found


def test_dependencies_are_installed_from_the_locks_before_the_source_is_copied() -> None:
    deps = stage("deps")
    assert not any(line.startswith("COPY") and ("gateway" in line or "pyproject" in line)
                   for line in deps)  # a code change does not rebuild the dependency layer
    run = " ".join(line for line in deps if line.startswith("RUN"))
    assert "--require-hashes" in run and "requirements.lock" in run
    assert "build-requirements.lock" in run  # pip and setuptools pinned too, never --upgrade
    assert "--upgrade" not in " ".join(instructions())
    for name in ("build", "build-dev"):
        installs = [line for line in stage(name) if "pip install" in line]
        assert installs and all("--no-deps" in line for line in installs)


def test_the_lock_pins_every_runtime_dependency_of_pyproject_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["otlp"]]
    lock = locked(LOCK)
    for requirement in wanted:
        name, version = requirement.split("==")
        assert lock[name.lower()][0] == version, requirement
    assert all(hashes for _, hashes in lock.values())  # every line, transitive ones included
    dev_only = {"pytest", "hypothesis", "openai", "grpcio-tools"}
    assert not dev_only & set(lock)
    build = locked(BUILD_LOCK)
    build_system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    (setuptools,) = build_system["requires"]
    assert build["setuptools"][0] == setuptools.split("==")[1] and build["pip"][1]


def test_the_base_image_is_pinned_by_digest() -> None:
    froms = [line for line in instructions() if line.upper().startswith("FROM ")]
    external = [line for line in froms if "${PYTHON_IMAGE}" in line]
    assert external and all("${PYTHON_IMAGE}@${PYTHON_DIGEST}" in line for line in external)
    (digest,) = [line for line in instructions() if line.startswith("ARG PYTHON_DIGEST=")]
    assert re.fullmatch(r"ARG PYTHON_DIGEST=sha256:[0-9a-f]{64}", digest)


def test_the_production_build_has_no_emulator_or_demo(tmp_path: Path) -> None:
    """The build stage's steps, run here: the pruned source builds, imports and serves, and the
    emulator command says it is not installed."""
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "node_modules")
    for name in ("gateway", "clients"):  # the Dockerfile's COPY lines (the working tree's)
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # The build stage's RUN, as it is in the Dockerfile.
    (prune,) = [line for line in stage("build") if line.startswith("RUN rm -rf")]
    assert "rm -rf gateway/emulator gateway/demo.py" in prune
    subprocess.run(["rm", "-rf", "gateway/emulator", "gateway/demo.py"], cwd=source, check=True)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), str(source)], check=True,
                   capture_output=True, timeout=120)
    (wheel,) = wheels.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith(("gateway/emulator/", "gateway/demo"))]
    assert "gateway/app.py" in names and "gateway/tracing.py" in names
    # The generated code the server imports comes with it, in the client package (clients/ is
    # only its folder: no `clients` package).
    assert "messages_gateway_client/generated/messages_gateway.binpb" in names
    assert not [n for n in names if n.startswith("clients/")]
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    # -S: no site processing, so the checkout's editable install (a .pth finder that maps every
    # gateway.* name to the source tree) is not there; the venv's packages come by PYTHONPATH.
    import sysconfig
    env = {"PYTHONPATH": f"{installed}:{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin"}
    check = subprocess.run(
        [sys.executable, "-S", "-c", "import importlib.util as u, gateway, gateway.app; "
         "import messages_gateway_client.generated.messages_gateway.v1.messages_pb2 as pb; "
         "assert gateway.__file__.startswith(%r), gateway.__file__; "
         "assert pb.__file__.startswith(%r), pb.__file__; "
         "assert u.find_spec('gateway.emulator') is None and u.find_spec('gateway.demo') is None"
         % (str(installed), str(installed))], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    emulator = subprocess.run([sys.executable, "-S", "-m", "gateway", "emulator"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert emulator.returncode == 2 and "not installed" in emulator.stderr
    assert "Traceback" not in emulator.stderr


@pytest.mark.parametrize("target", ["dev", "runtime"])
def test_both_images_run_as_non_root_with_the_gateway_entrypoint(target: str) -> None:
    lines = stage(target)
    assert "USER 10001:10001" in lines
    assert 'ENTRYPOINT ["gateway", "serve"]' in lines
