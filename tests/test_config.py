"""Configuration: file, environment and flags, validated with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings, parse_listen


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    settings = load_settings(None, environ={})
    assert settings.server.grpc_listen == "127.0.0.1:50051"
    assert settings.upstream.beta == "assistants=v1"


def test_file_then_environment_override(tmp_path: Path) -> None:
    path = write(tmp_path, '[upstream]\nbase_url = "http://up.internal:8080/v1"\nmax_connections = 7\n')
    settings = load_settings(path, environ={"GATEWAY_UPSTREAM_MAX_CONNECTIONS": "9"})
    assert settings.upstream.base_url == "http://up.internal:8080/v1"
    assert settings.upstream.max_connections == 9


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\ngrpc_listen = "127.0.0.1:6000"\n')
    settings = load_settings(None, environ={"GATEWAY_CONFIG": str(path)})
    assert settings.server.grpc_listen == "127.0.0.1:6000"


@pytest.mark.parametrize(("text", "key"), [
    ('[server]\ngrpc_listen = 5\n', "server.grpc_listen"),
    ('[server]\nnope = 1\n', "server.nope"),
    ('[nope]\n', "[nope]"),
    ('[upstream]\nmax_connections = "many"\n', "upstream.max_connections"),
    ('[upstream]\nmax_connections = 0\n', "upstream.max_connections"),
    ('[upstream]\nbase_url = "ftp://x"\n', "upstream.base_url"),
    ('[upstream]\nallowed_extra_headers = ["Authorization"]\n', "upstream.allowed_extra_headers"),
    ('[upstream]\ntransport = "curl"\n', "upstream.transport"),
    ('[server]\ngrpc_listen = "nohostport"\n', "server.grpc_listen"),
    ('[logging]\nformat = "xml"\n', "logging.format"),
    ('[server]\nreflection = "yes"\n', "server.reflection"),
    ('[cache]\nbackend = "disk"\n', "cache.backend"),
    ('[cache]\nbackend = "redis"\nredis_url = "http://x"\n', "cache.redis_url"),
    ('[cache]\nredis_op_timeout_seconds = 0\n', "cache.redis_op_timeout_seconds"),
    ('[cache]\nmax_bytes = -1\n', "cache.max_bytes"),
    ('[cache]\nlist_messages_ttl_seconds = -2\n', "cache.list_messages_ttl_seconds"),
    ('[reliability]\nidempotency_backend = "disk"\n', "reliability.idempotency_backend"),
    ('[server]\nmax_connection_age_seconds = -1\n', "server.max_connection_age_seconds"),
    ('[server]\nmax_connection_age_grace_seconds = 0\n',
     "server.max_connection_age_grace_seconds"),
])
def test_invalid_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_settings(write(tmp_path, text), environ={})


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[server\n"), environ={})


def test_environment_value_is_type_checked() -> None:
    with pytest.raises(ConfigError, match="server.grace_seconds"):
        load_settings(None, environ={"GATEWAY_SERVER_GRACE_SECONDS": "soon"})


def test_api_key_file_wins_and_is_reread(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-one\n")
    settings = load_settings(None, environ={"GATEWAY_UPSTREAM_API_KEY_FILE": str(key_file),
                                            "GATEWAY_UPSTREAM_API_KEY": "sk-inline"})
    assert settings.upstream.resolve_api_key() == "sk-one"
    key_file.write_text("sk-two")
    assert settings.upstream.resolve_api_key() == "sk-two"


def test_parse_listen_accepts_ipv6() -> None:
    assert parse_listen("[::1]:50051", "k") == ("::1", 50051)


def test_cache_section_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[cache]\nbackend = "redis"\nget_message_ttl_seconds = 5\n')
    settings = load_settings(path, environ={"GATEWAY_CACHE_MAX_ENTRIES": "42"})
    assert settings.cache.backend == "redis"
    assert settings.cache.get_message_ttl_seconds == 5.0
    assert settings.cache.max_entries == 42
    assert load_settings(None, environ={}).cache.backend == "memory"


def test_tracing_is_off_by_default_and_reads_its_section(tmp_path: Path) -> None:
    assert load_settings(None, environ={}).tracing.enabled is False
    path = write(tmp_path, '[tracing]\nenabled = true\notlp_endpoint = "https://otel.internal:4317"'
                 '\nsampling_ratio = 0.25\nresource_attributes = ["team=platform"]\n')
    tracing = load_settings(path, environ={"GATEWAY_TRACING_SERVICE_NAME": "gw-eu"}).tracing
    assert (tracing.enabled, tracing.otlp_endpoint, tracing.sampling_ratio, tracing.service_name,
            tracing.resource_attributes) == (True, "https://otel.internal:4317", 0.25, "gw-eu",
                                             ("team=platform",))


def test_otel_resource_attributes_are_read_and_the_file_wins(tmp_path: Path) -> None:
    path = write(tmp_path, '[tracing]\nresource_attributes = ["team=platform"]\n')
    tracing = load_settings(path, environ={
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod, team=other"}).tracing
    # Later pairs win when the resource is built: the file's come last.
    assert tracing.resource_attributes == ("deployment.environment=prod", "team=other",
                                           "team=platform")


@pytest.mark.parametrize(("text", "key"), [
    ('[tracing]\nsampling_ratio = 1.5\n', "tracing.sampling_ratio"),
    ('[tracing]\nsampling_ratio = -0.1\n', "tracing.sampling_ratio"),
    ('[tracing]\nsampling_ratio = nan\n', "tracing.sampling_ratio"),
    ('[tracing]\notlp_endpoint = "otel:4317"\n', "tracing.otlp_endpoint"),
    ('[tracing]\notlp_endpoint = "http://otel"\n', "tracing.otlp_endpoint"),
    ('[tracing]\notlp_endpoint = "http://otel:4317/v1/traces"\n', "tracing.otlp_endpoint"),
    ('[tracing]\notlp_endpoint = "http://user:pw@otel:4317"\n', "tracing.otlp_endpoint"),
    ('[tracing]\notlp_endpoint = "http://otel:99999"\n', "tracing.otlp_endpoint"),
    ('[tracing]\nservice_name = ""\n', "tracing.service_name"),
    ('[tracing]\nresource_attributes = ["novalue"]\n', "tracing.resource_attributes"),
    ('[tracing]\nresource_attributes = ["=v"]\n', "tracing.resource_attributes"),
    ('[tracing]\nexport_timeout_seconds = 0\n', "tracing.export_timeout_seconds"),
    ('[tracing]\nenabled = "yes"\n', "tracing.enabled"),
])
def test_invalid_tracing_settings_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(write(tmp_path, text), environ={})


def test_a_bad_otel_resource_attributes_names_the_variable_not_the_value() -> None:
    with pytest.raises(ConfigError, match="OTEL_RESOURCE_ATTRIBUTES") as caught:
        load_settings(None, environ={"OTEL_RESOURCE_ATTRIBUTES": "ok=1,secret-token-only"})
    assert "secret-token-only" not in str(caught.value)
