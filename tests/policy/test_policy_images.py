"""Image references and the image policy (policy.images): the grammar `docker pull` accepts,
and which repository may replace which. Pure: no engine."""

from __future__ import annotations

import pytest

from policy.images import ImageReferenceError, image_admitted, image_policy_problem, parse_image_reference


@pytest.mark.parametrize(
    ("text", "name", "tag", "repository"),
    [
        ("nginx", "nginx", None, "docker.io/library/nginx"),
        ("nginx:1.27", "nginx", "1.27", "docker.io/library/nginx"),
        ("me/app:v2-rc.1", "me/app", "v2-rc.1", "docker.io/me/app"),
        ("ghcr.io/me/app:2", "ghcr.io/me/app", "2", "ghcr.io/me/app"),
        ("localhost:5000/app:2", "localhost:5000/app", "2", "localhost:5000/app"),
        ("registry.local:443/a/b/c:latest", "registry.local:443/a/b/c", "latest", "registry.local:443/a/b/c"),
        ("docker.io/library/nginx:1", "docker.io/library/nginx", "1", "docker.io/library/nginx"),
        ("my_app__x-y:1_0", "my_app__x-y", "1_0", "docker.io/library/my_app__x-y"),
    ],
)
def test_valid_references_parse(text: str, name: str, tag: str | None, repository: str) -> None:
    ref = parse_image_reference(text)
    assert (ref.name, ref.tag, ref.repository) == (name, tag, repository)


def test_a_digest_reference_parses() -> None:
    ref = parse_image_reference("app@sha256:" + "a" * 64)
    assert ref.digest == "sha256:" + "a" * 64 and ref.pull_args == ("app", "sha256:" + "a" * 64)


@pytest.mark.parametrize(
    "text",
    ["", "App:1", "app:", "app::1", ":1", "app:-x", "app:" + "x" * 129, "app name:1", "app;ls:1", "app$(id):1",
     "../app:1", "/app:1", "app/:1", "app//b:1", "app..b:1", "app@sha256:xyz", "a" * 64, "sha256:" + "b" * 64,
     "app:1\n", "äpp:1", None, 5],
)
def test_invalid_references_are_refused(text: object) -> None:
    with pytest.raises(ImageReferenceError):
        parse_image_reference(text)


def test_image_policy_same_repository_or_allowlist() -> None:
    app2 = parse_image_reference("app:2")
    assert image_policy_problem(app2, {"docker.io/library/app"}, []) is None
    other = parse_image_reference("evil/app:2")
    assert "another repository" in (image_policy_problem(other, {"docker.io/library/app"}, []) or "")
    assert image_admitted(other, ["evil/*"]) and image_admitted(other, ["evil/app"])
    assert image_admitted(other, ["docker.io/evil/*"]) and image_admitted(other, ["docker.io/evil/app"])
    assert not image_admitted(other, ["evil/ap"]) and not image_admitted(other, ["good/*"])
    assert image_admitted(parse_image_reference("nginx:1.27"), ["nginx"])
