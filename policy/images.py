"""Image references and the image policy: what ``docker pull`` accepts, and which image may replace which.

Pure like the rest of ``policy/``: text in, a parsed reference or a one-line reason out; no
engine, no registry. The executor's deployer asks :func:`parse_image_reference` about
every image it is given and :func:`image_policy_problem` before it replaces a container's
image: the new image must come from a repository the running image already goes by,
unless the image allowlist (``WINGMAN_IMAGE_ALLOWLIST``) admits it.

A reference that cannot be used raises :class:`ImageReferenceError`, whose ``str()`` is
one line for the operator; the executor turns it into a refusal (``check_image_reference``
in ``executor.deploy``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from policy.names import show

# The grammar of distribution/reference (what `docker pull` accepts), ASCII only.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_HEX64 = re.compile(r"(?:sha256:)?[0-9a-f]{64}")
NAME_MAX = 255  # Docker's limit for a repository name with its domain
REFERENCE_MAX = 512


class ImageReferenceError(ValueError):
    """Text that is not a usable image reference; ``str()`` is one line saying why and what to give."""


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed ``[domain/]path[:tag][@digest]``; ``repository`` is fully qualified."""

    text: str
    name: str
    tag: str | None
    digest: str | None
    repository: str  # docker.io/library/nginx for "nginx"

    @property
    def pull_args(self) -> tuple[str, str]:
        """(repository, tag-or-digest) as the SDK's ``pull`` takes them."""
        return self.name, self.digest or self.tag or "latest"


def parse_image_reference(text: object) -> ImageReference:
    """The parsed reference, or ImageReferenceError with the reason (bad syntax, an image id, too long)."""
    if not isinstance(text, str) or not text:
        raise ImageReferenceError(f"{show(text)} is not an image reference: give name:tag, like nginx:1.27")
    if len(text) > REFERENCE_MAX:
        raise ImageReferenceError(f"{show(text)} is too long for an image reference")
    if _HEX64.fullmatch(text) or text.startswith("sha256:"):
        raise ImageReferenceError(f"{show(text)} is an image id: give the image by name and tag, like app:1.2")
    match = _REFERENCE.fullmatch(text)
    if match is None:
        raise ImageReferenceError(
            f"{show(text)} is not a valid image reference: name[:tag] with a lower-case name"
            " (letters, digits, '.', '_', '-', '/') and a tag of letters, digits, '_', '.', '-'"
        )
    name = match.group("name")
    if len(name) > NAME_MAX:
        raise ImageReferenceError(f"{show(text)}: the image name is longer than {NAME_MAX} characters")
    return ImageReference(text, name, match.group("tag"), match.group("digest"), _qualified(name))


def _qualified(name: str) -> str:
    """docker.io/library/nginx for nginx: the form in which two names can be compared."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return name
    if sep:
        return f"docker.io/{name}"
    return f"docker.io/library/{name}"


def repository_of(text: str) -> str | None:
    """The fully qualified repository ``text`` names, or None when it is not an image reference."""
    try:
        return parse_image_reference(text).repository
    except ImageReferenceError:
        return None


def image_admitted(ref: ImageReference, patterns: Sequence[str]) -> bool:
    """Whether an image allowlist entry admits ``ref``: an exact name, or a ``prefix*`` glob.

    An exact entry matches the repository (``nginx`` and ``docker.io/library/nginx`` alike)
    or the whole reference; a glob's prefix is compared with the name as typed and with the
    qualified repository.
    """
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            continue
        if pattern.endswith("*"):
            prefix = pattern[:-1]
            if ref.text.startswith(prefix) or ref.name.startswith(prefix) or ref.repository.startswith(prefix):
                return True
        elif pattern == ref.text or pattern == ref.name or repository_of(pattern) == ref.repository:
            return True
    return False


def image_policy_problem(ref: ImageReference, current: set[str], allowlist: Sequence[str]) -> str | None:
    """None when ``ref`` may replace an image of the ``current`` repositories, else why not."""
    if ref.repository in current or image_admitted(ref, allowlist):
        return None
    now = ", ".join(sorted(current)) or "an unknown repository"
    return (
        f"{ref.text} is from another repository than the running image ({now}); "
        "only the image allowlist can admit a different repository"
    )
