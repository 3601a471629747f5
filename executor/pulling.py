"""Pulling an approved image by its digest: progress as it goes, and the digest checked after.

A deploy bound to a registry digest (:class:`executor.pinning.ImagePin`, source
``registry``) pulls ``repository@digest`` only after its approval, under the container's
lock, before anything is touched (:meth:`executor.deploy.Deployer.deploy`). The engine's
pull stream runs in the driver's thread pool and feeds a :class:`PullTally`; the event
loop reads the tally about once a second (``PROGRESS_INTERVAL``) and, when it changed,
reports stage ``pulling`` with the layers, the bytes and the seconds so far, so the
approval message shows the pull live without one outbox write per stream event. A last
``pulled`` report gives the totals.

When the pull is over, the image is checked against the approval before the deployer may
use it (:func:`digest_problem`): the digest the engine reports having pulled, and the
digests the image goes by in this repository, must be the approved one. The engine already
verifies what it downloads against the digest it asked for; this check holds the deploy to
the approval even if that ever changes (an engine, mirror or proxy that answers a digest
request with something else). A mismatch is a refusal: the container is not touched.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from docker.api.client import APIClient
from docker.errors import APIError, NotFound

from executor.docker_driver import DockerDriver, explain_api_error
from executor.errors import Refused
from executor.pinning import ImagePin, short_digest
from executor.progress import Progress, emit
from policy.images import ImageReference, repository_of

PROGRESS_INTERVAL = 1.0  # seconds between progress reports while a pull runs (the chat edits at most ~1/s)


@dataclass(frozen=True, slots=True)
class PullFigures:
    """How far a pull has come: layers (of which already here), bytes downloaded, seconds."""

    layers: int
    layers_done: int
    layers_present: int  # "Already exists": nothing to download
    bytes_done: int
    bytes_total: int
    seconds: float

    def as_details(self) -> dict[str, Any]:
        return {
            "layers": self.layers, "layers_done": self.layers_done, "layers_present": self.layers_present,
            "bytes_done": self.bytes_done, "bytes_total": self.bytes_total, "elapsed": round(self.seconds, 1),
        }  # fmt: skip

    def summary(self) -> str:
        """``2 layers (1 already here), 1.2 MB in 3 s``."""
        present = f" ({self.layers_present} already here)" if self.layers_present else ""
        return f"{self.layers} layers{present}, {human_bytes(self.bytes_done)} in {self.seconds:.0f} s"


def human_bytes(count: int) -> str:
    """``0 B``, ``812 kB``, ``1.2 MB``, ``3.40 GB`` (decimal units, as Docker shows them)."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= size:
            value = count / size
            return f"{value:.2f} {unit}" if unit == "GB" else f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{count} B"


@dataclass(slots=True)
class _Layer:
    current: int = 0
    total: int = 0
    done: bool = False
    present: bool = False


class PullTally:
    """What one pull has done so far: written by the worker thread, read on the event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._layers: dict[str, _Layer] = {}
        self._started: float | None = None
        self._ended: float | None = None
        self.digest: str | None = None  # as the engine reports it: "Digest: sha256:…"
        self.errors: list[str] = []

    @property
    def pulled(self) -> bool:
        """Whether a pull was started (False: the image was here already)."""
        return self._started is not None

    def start(self) -> None:
        with self._lock:
            self._started = self._clock()

    def end(self) -> None:
        with self._lock:
            self._ended = self._clock()

    def add(self, event: object) -> None:
        """One event of the engine's pull stream (``pull(stream=True, decode=True)``)."""
        if not isinstance(event, dict):
            return
        status = str(event.get("status") or "")
        with self._lock:
            if event.get("error"):
                self.errors.append(" ".join(str(event["error"]).split())[:300])
                return
            if status.startswith("Digest: "):
                self.digest = status.removeprefix("Digest: ").strip()
                return
            layer_id = event.get("id")
            if not isinstance(layer_id, str) or status.startswith("Pulling from") or status.startswith("Status: "):
                return
            layer = self._layers.setdefault(layer_id, _Layer())
            detail = event.get("progressDetail") or {}
            if status == "Downloading" and isinstance(detail, dict):
                layer.current = _whole(detail.get("current"), layer.current)
                layer.total = _whole(detail.get("total"), layer.total)
            elif status in ("Download complete", "Verifying Checksum") and layer.total:
                layer.current = layer.total
            elif status == "Pull complete":
                layer.done = True
                layer.current = max(layer.current, layer.total)
            elif status == "Already exists":
                layer.done = layer.present = True

    def figures(self) -> PullFigures:
        with self._lock:
            layers = list(self._layers.values())
            started = self._started if self._started is not None else self._clock()
            ended = self._ended if self._ended is not None else self._clock()
        return PullFigures(
            layers=len(layers),
            layers_done=sum(1 for layer in layers if layer.done),
            layers_present=sum(1 for layer in layers if layer.present),
            bytes_done=sum(layer.current for layer in layers),
            bytes_total=sum(layer.total for layer in layers),
            seconds=max(ended - started, 0.0),
        )


def _whole(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


@dataclass(frozen=True, slots=True)
class Pulled:
    """The approved image, here now: its inspect, the reference to create from, and the pull's figures."""

    image: dict[str, Any]
    create_ref: str
    figures: PullFigures | None  # None: it was here already, nothing was pulled

    def note(self) -> str:
        return f"; pulled {self.figures.summary()}" if self.figures is not None else ""


def digest_problem(image: dict[str, Any], ref: ImageReference, pin: ImagePin, reported: str | None) -> str | None:
    """Why the image at hand is not the approved one, or None when it is.

    ``reported`` is the digest the engine said it pulled (None when nothing was pulled);
    ``image`` is the engine's inspect of it. Its ``RepoDigests`` in ``ref``'s repository
    must include the approved digest.
    """
    approved = short_digest(pin.id)
    if reported is not None and reported != pin.id:
        return f"the registry gave {short_digest(reported)}, not the approved {approved}"
    ours = [
        digest for text in image.get("RepoDigests") or []
        for name, _, digest in [str(text).partition("@")]
        if repository_of(name) == ref.repository
    ]  # fmt: skip
    if not ours:
        return f"the image at hand has no digest in {ref.name}; the approved one is {approved}"
    if pin.id not in ours:
        return f"the image at hand is {', '.join(short_digest(d) for d in ours)}, not the approved {approved}"
    return None


def _fetch(api: APIClient, by_digest: str, tally: PullTally, refusal: str) -> dict[str, Any]:
    """In a worker thread: the image's inspect, pulled by digest first when the engine lacks it."""
    try:
        return dict(api.inspect_image(by_digest))
    except NotFound:
        pass
    tally.start()
    try:
        for event in api.pull(by_digest, stream=True, decode=True):
            tally.add(event)
    except APIError as exc:
        tally.errors.append(explain_api_error(exc))
    finally:
        tally.end()
    try:
        return dict(api.inspect_image(by_digest))
    except NotFound:
        why = tally.errors[-1] if tally.errors else "the registry did not provide it"
        raise Refused(f"{refusal}: {why}") from None


async def pull_pinned(
    driver: DockerDriver, ref: ImageReference, pin: ImagePin, progress: Progress, *, interval: float = PROGRESS_INTERVAL
) -> Pulled:
    """The approved registry image, pulled by digest when needed with live progress, then checked.

    Refused (nothing touched) when it cannot be pulled or is not the approved digest.
    Created from ``name:tag@digest`` when the request named a tag, so the new container
    still says which tag it follows (the engine resolves the digest, not the tag).
    """
    by_digest = f"{ref.name}@{pin.id}"
    create_ref = f"{ref.name}:{ref.tag}@{pin.id}" if ref.tag else by_digest
    tally = PullTally()
    job = asyncio.ensure_future(driver.run(lambda api: _fetch(api, by_digest, tally, f"the approved image {pin} could not be pulled")))
    shown: PullFigures | None = None
    while not job.done():
        await asyncio.wait({job}, timeout=interval)
        if job.done() or not tally.pulled:
            continue
        figures = tally.figures()
        if shown is None or (figures.layers_done, figures.bytes_done, figures.layers) != (shown.layers_done, shown.bytes_done, shown.layers):
            await emit(progress, "pulling", {"image": by_digest, **figures.as_details()})
            shown = figures
    image = job.result()  # raises Refused when it could not be had
    figures = tally.figures() if tally.pulled else None
    if figures is not None:
        await emit(progress, "pulled", {"image": by_digest, **figures.as_details()})
    problem = digest_problem(image, ref, pin, tally.digest)
    if problem is not None:
        raise Refused(f"the pulled image is not the one approved ({problem}); nothing was changed")
    return Pulled(image, create_ref, figures)
