"""What a deploy or rollback request is bound to: the image found when it was asked, by id or digest.

When a deploy is requested the executor resolves the image at once (``Deployer.pin``): the
local image's id, or else the registry's manifest digest, asked through the engine
without pulling. The :class:`ImagePin` travels in the approval's signed arguments, so the
image the approvers saw is the image that runs, whatever the tag names by the time the
last vote arrives. The deployer (``executor.deploy``) creates from the pin and says in the
outcome when the tag has moved since (:func:`named_now`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docker.api.client import APIClient
from docker.errors import APIError, NotFound

from executor.docker_driver import explain_api_error
from executor.errors import Refused
from policy.images import ImageReference

_PIN_ID = re.compile(r"sha256:[0-9a-f]{64}")
PIN_SOURCES = ("local", "registry")


@dataclass(frozen=True, slots=True)
class ImagePin:
    """The image a deploy or rollback is bound to, found when it was requested.

    ``source`` is ``local`` (``id`` is the image id on this host) or ``registry`` (``id``
    is the registry's manifest digest for ``image``, asked through the engine without
    pulling; the deploy pulls ``repository@digest``). The pin travels in the approval's
    signed arguments as :meth:`as_json`, so what the approvers saw is what runs.
    """

    image: str  # as asked for ("nginx:1.27"); a rollback's: the previous image's tag
    source: str
    id: str

    def as_json(self) -> dict[str, str]:
        return {"image": self.image, "source": self.source, "id": self.id}

    @classmethod
    def from_json(cls, value: object) -> ImagePin:
        if (
            not isinstance(value, dict)
            or set(value) != {"image", "source", "id"}
            or value["source"] not in PIN_SOURCES
            or not isinstance(value["id"], str)
            or not _PIN_ID.fullmatch(value["id"])
            or not isinstance(value["image"], str)
        ):
            raise Refused("the request's resolved image is malformed; ask again")
        return cls(value["image"], value["source"], value["id"])

    def __str__(self) -> str:
        return f"{self.image} · {short_digest(self.id)}"


def short_digest(digest: str) -> str:
    """``sha256:3f2a…c91b``: enough to recognise, short enough for a chat line."""
    algorithm, _, hexdigits = digest.partition(":")
    if len(hexdigits) <= 8:
        return digest
    return f"{algorithm}:{hexdigits[:4]}…{hexdigits[-4:]}"


def find_pin(api: APIClient, ref: ImageReference) -> ImagePin:
    """The local image's id, else the registry's digest (asked through the engine, not pulled); in a worker thread."""
    try:
        return ImagePin(ref.text, "local", str(api.inspect_image(ref.text)["Id"]))
    except NotFound:
        pass
    try:
        found = api.inspect_distribution(ref.text)
    except APIError as exc:
        why = explain_api_error(exc)
        head, sep, tail = why.partition(": ")
        why = head if sep and head == tail else why  # the registry's "manifest unknown: manifest unknown"
        raise Refused(f"image {ref.text} is not on this host and its registry could not resolve it: {why}") from None
    digest = (found.get("Descriptor") or {}).get("digest") if isinstance(found, dict) else None
    if not isinstance(digest, str) or not _PIN_ID.fullmatch(digest):
        raise Refused(f"image {ref.text} is not on this host and its registry gave no usable digest for it")
    if ref.digest is not None and digest != ref.digest:
        # repo:tag@digest (an update's reference): bound to that digest or to nothing.
        raise Refused(f"image {ref.text}: its registry resolved it to {short_digest(digest)}, not the digest asked for")
    return ImagePin(ref.text, "registry", digest)


def named_now(api: APIClient, ref: ImageReference, pin: ImagePin) -> str | None:
    """What ``ref`` names now where ``pin`` was found (an image id or a registry digest; None: nothing here)."""
    if pin.source == "local":
        try:
            return str(api.inspect_image(ref.text)["Id"])
        except NotFound:
            return None
    try:
        found = api.inspect_distribution(ref.text)
    except APIError:
        return pin.id  # the registry cannot say now: nothing to report
    return str((found.get("Descriptor") or {}).get("digest") or "")
