"""A stack's dependency order (executor.stacks): from the depends_on labels, else the compose file, else creation order."""

from __future__ import annotations

from pathlib import Path

from executor.stacks import (
    ORDER_FROM_CREATION,
    ORDER_FROM_FILE,
    ORDER_FROM_LABELS,
    Member,
    compose_file_note,
    dependency_order,
    read_compose_file,
)


def _m(service: str, created: str, labels: dict[str, str] | None = None) -> Member:
    return Member(f"p_{service}_1", service, service, created, labels or {})


def test_the_order_comes_from_labels_then_the_file_then_creation() -> None:
    services = {"app": [_m("app", "2026-01-01T00:00:01Z")], "db": [_m("db", "2026-01-01T00:00:02Z")]}
    assert dependency_order(services, None) == (["app", "db"], ORDER_FROM_CREATION)
    labelled = {
        "app": [_m("app", "2026-01-01T00:00:01Z", {"com.docker.compose.depends_on": "db:service_healthy:false"})],
        "db": [_m("db", "2026-01-01T00:00:02Z", {"com.docker.compose.depends_on": ""})],
    }
    assert dependency_order(labelled, None) == (["db", "app"], ORDER_FROM_LABELS)


def test_a_cycle_or_a_missing_dependency_does_not_stop_the_order(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(
        "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: y, depends_on: {a: {condition: service_started}}}\n"
        "  c: {image: z, depends_on: [gone]}\n"
    )
    compose = read_compose_file({"com.docker.compose.project.config_files": "docker-compose.yml",
                                 "com.docker.compose.project.working_dir": str(tmp_path)})  # fmt: skip
    assert compose is not None and compose.depends_on == {"a": ["b"], "b": ["a"], "c": ["gone"]}
    services = {s: [_m(s, f"2026-01-01T00:00:0{i}Z")] for i, s in enumerate(["c", "a", "b"])}
    assert dependency_order(services, compose) == (["c", "a", "b"], ORDER_FROM_FILE)


def test_the_note_about_the_compose_file(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  app: {image: 'app:1'}\n")
    labels = {"com.docker.compose.project": "p", "com.docker.compose.service": "app",
              "com.docker.compose.project.config_files": str(tmp_path / "compose.yaml")}  # fmt: skip
    assert "still names app:1 for app" in compose_file_note(labels, "app:2")
    assert compose_file_note(labels, "app:1") == ""
    assert compose_file_note({}, "app:2") == ""  # not a Compose service
    (tmp_path / "compose.yaml").write_text("services: !!python/object:os.system [echo]\n")
    assert "could not be read" in compose_file_note(labels, "app:2")
    (tmp_path / "compose.yaml").unlink()
    assert "could not be read" in compose_file_note(labels, "app:2")
