"""The create request a deploy sends: the old container's settings with only the image changed.

Pure: the old container's inspect and the old image's inspect in, the body of
``POST /containers/create`` and the network joins that follow it out. No engine is asked
anything here (``api_version`` is passed in), so the rules are tested on inspect documents
alone (tests/docker/test_rules.py). The deployer (``executor.deploy``) sends the result.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from docker.utils import version_gte


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """How the container joins one network (the inspect's endpoint, minus what is per-container)."""

    ipv4_address: str | None = None
    ipv6_address: str | None = None
    link_local_ips: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    driver_opts: dict[str, str] | None = None
    mac_address: str | None = None

    def as_create_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        ipam = {
            key: value
            for key, value in (
                ("IPv4Address", self.ipv4_address),
                ("IPv6Address", self.ipv6_address),
                ("LinkLocalIPs", list(self.link_local_ips)),
            )
            if value
        }
        if ipam:
            config["IPAMConfig"] = ipam
        if self.aliases:
            config["Aliases"] = list(self.aliases)
        if self.links:
            config["Links"] = list(self.links)
        if self.driver_opts:
            config["DriverOpts"] = dict(self.driver_opts)
        if self.mac_address:
            config["MacAddress"] = self.mac_address
        return config


@dataclass(frozen=True, slots=True)
class CreateSpec:
    """The body of ``POST /containers/create`` and the network joins that follow it."""

    body: dict[str, Any]
    connect: list[tuple[str, EndpointSpec]] = field(default_factory=list)
    disconnect: list[str] = field(default_factory=list)


def _same_list(a: Any, b: Any) -> bool:
    return list(a or []) == list(b or [])


def _bind_target(bind: str) -> str | None:
    parts = bind.split(":")
    return parts[1] if len(parts) >= 2 else None


def build_create_spec(container: dict[str, Any], old_image: dict[str, Any], image: str, *, api_version: str) -> CreateSpec:
    """The create request that recreates ``container`` from ``image`` with only the image changed.

    Every setting of the old container is kept, except where it merely equals the OLD
    image's default: then it is left out, so that the engine fills in the NEW image's
    default (a changed CMD, ENV default, healthcheck, user, working directory, stop signal
    or exposed port takes effect) — the rule watchtower applies when it rebuilds a config.
    Anonymous volumes are carried over by name (as docker compose does) so their data stays.
    Per-container values are dropped: the short-id alias and a hostname equal to the old id.
    """
    config = copy.deepcopy(container.get("Config") or {})
    host = copy.deepcopy(container.get("HostConfig") or {})
    image_config = (old_image or {}).get("Config") or {}
    old_id = str(container.get("Id", ""))
    network_mode = str(host.get("NetworkMode") or "default")

    config["Image"] = image
    config.pop("OnBuild", None)
    if config.get("Hostname") == old_id[:12] or network_mode == "host" or network_mode.startswith("container:"):
        config.pop("Hostname", None)  # the engine's default (the new id), or not ours to set
    for key in ("User", "WorkingDir"):
        if config.get(key) == image_config.get(key):
            config.pop(key, None)
    if config.get("StopSignal") and config.get("StopSignal") == image_config.get("StopSignal"):
        config.pop("StopSignal", None)
    if _same_list(config.get("Entrypoint"), image_config.get("Entrypoint")):
        config["Entrypoint"] = None
        if _same_list(config.get("Cmd"), image_config.get("Cmd")):
            config["Cmd"] = None
            config.pop("ArgsEscaped", None)
    image_env = set(image_config.get("Env") or [])
    config["Env"] = [item for item in config.get("Env") or [] if item not in image_env]
    image_labels = image_config.get("Labels") or {}
    config["Labels"] = {k: v for k, v in (config.get("Labels") or {}).items() if image_labels.get(k) != v}
    image_volumes = image_config.get("Volumes") or {}
    config["Volumes"] = {k: v for k, v in (config.get("Volumes") or {}).items() if k not in image_volumes} or None
    image_ports = image_config.get("ExposedPorts") or {}
    ports = {k: v for k, v in (config.get("ExposedPorts") or {}).items() if k not in image_ports}
    for port in host.get("PortBindings") or {}:
        ports.setdefault(port, {})
    config["ExposedPorts"] = ports or None
    healthcheck = config.get("Healthcheck")
    if isinstance(healthcheck, dict):
        image_health = image_config.get("Healthcheck") or {}
        kept = {k: v for k, v in healthcheck.items() if image_health.get(k) != v or k not in image_health}
        config["Healthcheck"] = kept or None

    # Anonymous volumes (an image VOLUME, `-v /path`) would otherwise come back empty.
    covered = {_bind_target(bind) for bind in host.get("Binds") or []}
    covered |= {mount.get("Target") for mount in host.get("Mounts") or []}
    carried = [
        {"Type": "volume", "Source": mount["Name"], "Target": mount["Destination"], "ReadOnly": not mount.get("RW", True)}
        for mount in container.get("Mounts") or []
        if mount.get("Type") == "volume" and mount.get("Name") and mount.get("Destination") not in covered
    ]
    if carried:
        host["Mounts"] = list(host.get("Mounts") or []) + carried

    with_mac = version_gte(api_version, "1.44")
    if with_mac:
        config.pop("MacAddress", None)  # deprecated there: the MAC is per endpoint
    networks: dict[str, Any] = (container.get("NetworkSettings") or {}).get("Networks") or {}
    endpoints: dict[str, EndpointSpec] = {}
    if network_mode not in ("host", "none") and not network_mode.startswith("container:"):
        own_ids = {old_id, old_id[:12]}
        for net_name, endpoint in networks.items():
            endpoint = endpoint or {}
            ipam = endpoint.get("IPAMConfig") or {}
            aliases = tuple(a for a in endpoint.get("Aliases") or [] if a not in own_ids)
            endpoints[net_name] = EndpointSpec(
                ipv4_address=ipam.get("IPv4Address") or None,
                ipv6_address=ipam.get("IPv6Address") or None,
                link_local_ips=tuple(ipam.get("LinkLocalIPs") or ()),
                # The default bridge takes no aliases: the engine refuses them there.
                aliases=() if net_name == "bridge" else aliases,
                links=tuple(endpoint.get("Links") or ()),
                driver_opts=endpoint.get("DriverOpts") or None,
                mac_address=(endpoint.get("MacAddress") or None) if with_mac else None,
            )
    primary = "bridge" if network_mode == "default" else network_mode
    if primary not in endpoints:
        # NetworkMode may hold a network id rather than its name.
        primary = next(
            (n for n, e in networks.items() if e and str(e.get("NetworkID", "")).startswith(network_mode)), primary
        )
    body = dict(config)
    body["HostConfig"] = host
    body["NetworkingConfig"] = {"EndpointsConfig": {primary: endpoints[primary].as_create_config()}} if primary in endpoints else {}
    connect = [(n, spec) for n, spec in endpoints.items() if n != primary]
    disconnect = [primary] if endpoints and primary not in endpoints else []
    return CreateSpec(body=body, connect=connect, disconnect=disconnect)
