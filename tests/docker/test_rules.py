"""The pure rules behind the Docker actions: the create request, aside names, log cleaning.
No engine needed; the inspect documents are shaped like real ones. (Image references and the
image policy are tested in tests/policy/test_policy_images.py.)"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from executor.create_spec import build_create_spec
from executor.deploy import check_image_reference
from executor.docker_driver import clean_log_text, mask_secrets, parse_aside_name, aside_name
from executor.errors import Refused


def test_the_executor_refuses_a_bad_image_reference_with_the_policy_reason() -> None:
    with pytest.raises(Refused, match="is an image id: give the image by name and tag"):
        check_image_reference("sha256:" + "b" * 64)
    assert check_image_reference("nginx:1.27").repository == "docker.io/library/nginx"


def test_aside_names_round_trip() -> None:
    assert parse_aside_name(aside_name("web-1", "0123456789ab")) == ("web-1", "0123456789ab")
    assert parse_aside_name("web-wingman-old-") is None and parse_aside_name("web") is None


# -- the create request ----------------------------------------------------------------------------

OLD_ID = "0123456789ab" + "c" * 52
IMAGE = {
    "Config": {
        "Env": ["PATH=/bin", "APP_VERSION=1"],
        "Cmd": ["serve"],
        "Entrypoint": ["/entry"],
        "Labels": {"org.version": "1", "org.vendor": "me"},
        "WorkingDir": "/app",
        "User": "app",
        "StopSignal": "SIGQUIT",
        "ExposedPorts": {"8080/tcp": {}},
        "Volumes": {"/cache": {}},
        "Healthcheck": {"Test": ["CMD", "check"], "Interval": 1_000_000_000, "Retries": 3},
    }
}
CONTAINER: dict[str, Any] = {
    "Id": OLD_ID,
    "Name": "/web",
    "Config": {
        "Hostname": "0123456789ab",
        "Env": ["FOO=bar", "PATH=/bin", "APP_VERSION=1"],
        "Cmd": ["serve"],
        "Entrypoint": ["/entry"],
        "Labels": {"org.version": "1", "org.vendor": "us", "team": "ops"},
        "WorkingDir": "/app",
        "User": "app",
        "StopSignal": "SIGQUIT",
        "StopTimeout": 20,
        "ExposedPorts": {"8080/tcp": {}, "9000/tcp": {}},
        "Volumes": {"/cache": {}, "/extra": {}},
        "Healthcheck": {"Test": ["CMD", "check"], "Interval": 1_000_000_000, "Retries": 5},
        "Image": "app:1",
        "MacAddress": "02:42:ac:11:00:99",
    },
    "HostConfig": {
        "NetworkMode": "front",
        "Binds": ["/srv/data:/data:ro", "named:/named"],
        "PortBindings": {"9000/tcp": [{"HostIp": "", "HostPort": "19000"}]},
        "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
        "Memory": 67108864,
    },
    "Mounts": [
        {"Type": "bind", "Source": "/srv/data", "Destination": "/data", "RW": False},
        {"Type": "volume", "Name": "named", "Destination": "/named", "RW": True},
        {"Type": "volume", "Name": "f" * 64, "Destination": "/cache", "RW": True},
        {"Type": "volume", "Name": "e" * 64, "Destination": "/extra", "RW": True},
    ],
    "NetworkSettings": {
        "Networks": {
            "front": {
                "IPAMConfig": {"IPv4Address": "10.9.0.10"},
                "Aliases": ["web", "0123456789ab"],
                "Links": None,
                "NetworkID": "n1" * 32,
                "MacAddress": "02:42:ac:11:00:99",
            },
            "back": {"IPAMConfig": None, "Aliases": ["api", "0123456789ab"], "NetworkID": "n2" * 32},
            "bridge": {"IPAMConfig": None, "Aliases": None, "NetworkID": "n3" * 32},
        }
    },
}


def test_image_defaults_give_way_and_settings_made_by_hand_stay() -> None:
    spec = build_create_spec(copy.deepcopy(CONTAINER), IMAGE, "app:2", api_version="1.41")
    body = spec.body
    assert body["Image"] == "app:2"
    assert "Hostname" not in body  # it was the old id: the engine gives the new one
    assert body["Env"] == ["FOO=bar"]  # the image's own defaults come from the new image
    assert body["Labels"] == {"org.vendor": "us", "team": "ops"}
    assert body["Entrypoint"] is None and body["Cmd"] is None
    assert "WorkingDir" not in body and "User" not in body and "StopSignal" not in body
    assert body["StopTimeout"] == 20 and body["MacAddress"] == "02:42:ac:11:00:99"
    assert body["ExposedPorts"] == {"9000/tcp": {}}
    assert body["Volumes"] == {"/extra": {}}
    assert body["Healthcheck"] == {"Retries": 5}  # only what differs from the old image
    host = body["HostConfig"]
    assert host["RestartPolicy"] == CONTAINER["HostConfig"]["RestartPolicy"] and host["Memory"] == 67108864
    assert host["Binds"] == CONTAINER["HostConfig"]["Binds"]
    assert host["Mounts"] == [
        {"Type": "volume", "Source": "f" * 64, "Target": "/cache", "ReadOnly": False},
        {"Type": "volume", "Source": "e" * 64, "Target": "/extra", "ReadOnly": False},
    ]
    assert body["NetworkingConfig"] == {
        "EndpointsConfig": {"front": {"IPAMConfig": {"IPv4Address": "10.9.0.10"}, "Aliases": ["web"]}}
    }
    connect = dict(spec.connect)
    assert set(connect) == {"back", "bridge"} and spec.disconnect == []
    assert connect["back"].aliases == ("api",) and connect["bridge"].aliases == ()
    assert CONTAINER["Config"]["Env"] == ["FOO=bar", "PATH=/bin", "APP_VERSION=1"], "the input was changed"


def test_with_a_changed_entrypoint_the_command_is_kept_and_newer_apis_keep_the_mac_per_network() -> None:
    container = copy.deepcopy(CONTAINER)
    container["Config"]["Entrypoint"] = ["/other"]
    spec = build_create_spec(container, IMAGE, "app:2", api_version="1.44")
    assert spec.body["Entrypoint"] == ["/other"] and spec.body["Cmd"] == ["serve"]
    assert "MacAddress" not in spec.body
    front = spec.body["NetworkingConfig"]["EndpointsConfig"]["front"]
    assert front["MacAddress"] == "02:42:ac:11:00:99"


def test_host_and_container_network_modes_take_no_endpoints() -> None:
    for mode in ("host", "container:" + "d" * 64):
        container = copy.deepcopy(CONTAINER)
        container["HostConfig"]["NetworkMode"] = mode
        spec = build_create_spec(container, IMAGE, "app:2", api_version="1.41")
        assert spec.body["NetworkingConfig"] == {} and spec.connect == [] and "Hostname" not in spec.body


def test_without_the_old_image_nothing_is_taken_for_a_default() -> None:
    spec = build_create_spec(copy.deepcopy(CONTAINER), {}, "app:2", api_version="1.41")
    assert spec.body["Env"] == CONTAINER["Config"]["Env"] and spec.body["Cmd"] == ["serve"]


# -- log cleaning ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("GITHUB_TOKEN=ghp_abc123 next", "GITHUB_TOKEN=**** next"),
        ("db_password: hunter2", "db_password: ****"),
        ("MY_SECRET_KEY='x y z'", "MY_SECRET_KEY='****'"),
        ('{"api_key": "k-123", "id": 7}', '{"api_key": "****", "id": 7}'),
        ("GET /x?access_token=abc&page=2", "GET /x?access_token=****&page=2"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: ****"),
        ("curl -H 'Authorization: Bearer abc.def'", "curl -H 'Authorization: ****"),
        ("sent Bearer abc.def-ghi to upstream", "sent Bearer **** to upstream"),
        ("redis://default:s3cr3t@cache:6379/0", "redis://default:****@cache:6379/0"),
        ("nothing to see here: 42", "nothing to see here: 42"),
        ("tokens used=12", "tokens used=12"),
    ],
)
def test_obvious_secrets_are_masked(line: str, masked: str) -> None:
    assert mask_secrets(line) == masked


def test_ansi_and_control_codes_are_stripped() -> None:
    raw = b"\x1b[1;31mred\x1b[0m\n\x1b]0;title\x07plain\tx\nprogress 10%\rprogress 100%\r\nbell\x07\n\xff bad utf8\n"
    assert clean_log_text(raw) == ["red", "plain    x", "progress 100%", "bell", "\ufffd bad utf8"]
