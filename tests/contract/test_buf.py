"""The Buf module: lint and format clean, the breaking check really catches breaking changes,
and the shipped descriptor set is the contract the Python stubs are compiled from."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2
from tests.contract.conftest import BASELINE, BUF_DEPS, DESCRIPTOR_SET, ROOT

PROTO = Path("protos/messages_gateway/v1/messages.proto")


def run(buf: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(buf), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the Buf workspace (buf.yaml, protos/, the googleapis copy) to break on purpose."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "protos", tmp_path / "protos",
                    ignore=shutil.ignore_patterns("*.binpb"))
    (tmp_path / ".buf-deps").mkdir()
    (tmp_path / ".buf-deps" / "googleapis").symlink_to(BUF_DEPS)
    return tmp_path


def breaking(buf: Path, workspace: Path) -> subprocess.CompletedProcess[str]:
    return run(buf, "breaking", "protos", "--against", str(BASELINE), cwd=workspace)


def edit(workspace: Path, old: str, new: str) -> None:
    path = workspace / PROTO
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def test_lint_and_format_are_clean(buf: Path) -> None:
    lint = run(buf, "lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run(buf, "format", "--diff", "--exit-code")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_current_contract_is_compatible_with_the_baseline(buf: Path, workspace: Path) -> None:
    result = breaking(buf, workspace)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("old", "new", "finding"), [
    ("  string thread_id = 4;\n  // The status", "  string thread_id = 19;\n  // The status",
     "thread_id"),
    ('option java_package = "com.messagesgateway.v1";', 'option java_package = "com.other.v1";',
     "java_package"),
    ("  ROLE_ASSISTANT = 2;\n", "", 'enum value "2" on enum "Role" was deleted'),
])
def test_breaking_changes_are_caught(buf: Path, workspace: Path, old: str, new: str,
                                     finding: str) -> None:
    edit(workspace, old, new)
    result = breaking(buf, workspace)
    assert result.returncode != 0
    assert finding in result.stdout, result.stdout + result.stderr


def test_an_added_field_is_not_breaking(buf: Path, workspace: Path) -> None:
    edit(workspace, "  string unknown_role = 18;\n", "  string unknown_role = 18;\n  string x = 19;\n")
    result = breaking(buf, workspace)
    assert result.returncode == 0, result.stdout + result.stderr


def load_set() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(DESCRIPTOR_SET.read_bytes())
    return {f.name: f for f in fds.file}


def test_descriptor_set_has_imports_source_info_and_error_details() -> None:
    files = load_set()
    for name in ("google/api/annotations.proto", "google/api/http.proto",
                 "google/protobuf/struct.proto", "google/rpc/status.proto",
                 "google/rpc/error_details.proto", "messages_gateway/v1/messages.proto"):
        assert name in files
    contract = files["messages_gateway/v1/messages.proto"]
    assert contract.source_code_info.location, "no source info"
    assert [s.name for s in contract.service] == ["MessagesService", "ThreadsService"]


def drop_json_names(message: descriptor_pb2.DescriptorProto) -> None:
    for field in message.field:
        field.ClearField("json_name")
    for nested in message.nested_type:
        drop_json_names(nested)


def test_descriptor_set_matches_the_python_stubs() -> None:
    """Same messages, fields, numbers and types as the generated Python code (whose file lives
    under the virtual root messages_gateway_client/generated, hence the different file name)."""
    shipped = load_set()["messages_gateway/v1/messages.proto"]
    python = descriptor_pb2.FileDescriptorProto()
    messages_pb2.DESCRIPTOR.CopyToProto(python)
    assert python.package == shipped.package
    assert python.options == shipped.options
    for message in shipped.message_type:  # CopyToProto leaves json_name out
        drop_json_names(message)
    assert list(python.message_type) == list(shipped.message_type)
    assert list(python.enum_type) == list(shipped.enum_type)
    assert list(python.service) == list(shipped.service)


def test_language_options_are_set() -> None:
    options = load_set()["messages_gateway/v1/messages.proto"].options
    assert options.go_package.endswith("/messages_gateway/v1;messagesgatewayv1")
    assert options.java_package == "com.messagesgateway.v1" and options.java_multiple_files
    assert options.csharp_namespace == "MessagesGateway.V1"
    assert options.php_namespace == "MessagesGateway\\V1"
    assert options.ruby_package == "MessagesGateway::V1"
    assert options.objc_class_prefix == "MGX"
