"""Test images built FROM scratch with the static busybox binary: no registry is needed.

Every image of a test run lives in one repository of its own (``wingman-test-<run>/svc``)
so the deploy's same-repository rule admits them, and is removed when the run ends.

- ``v1``, ``v2``, ``v3``: busybox httpd on :8080 serving ``1``/``2``/``3``, with a fast
  HEALTHCHECK. v2 and v3 change the image defaults a deploy must pick up: ENV APP_VERSION,
  a label, CMD (``-v``) and the healthcheck's timeout.
- ``unhealthy``: the httpd runs, but its health check always fails.
- ``exit``: prints a few lines (one with a password) and exits with code 3 at once.
- ``nohc``: httpd without a health check (the deploy gate waits for a running window).
- ``loop``: exits after half a second; with a restart policy it restarts in a loop.

The httpd images run it under ``sh`` with a TERM trap, so ``docker stop`` is quick: PID 1
ignores a signal it has no handler for, and busybox httpd has none.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from docker.api.client import APIClient

BUSYBOX = Path("/bin/busybox")

_BASE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
"""

_HTTPD = """\
ENV APP_VERSION={version} APP_MODE=default
LABEL org.wingman.test.version="{version}" org.wingman.test="1"
RUN mkdir -p /www && echo {content} > /www/index.html
WORKDIR /www
EXPOSE 8080
CMD ["sh", "-c", "trap 'exit 0' TERM; httpd -f {flags}-p 8080 -h /www & wait"]
"""

_HEALTH_OK = 'HEALTHCHECK --interval=500ms --timeout={timeout} --retries=1 CMD wget -q -O- http://127.0.0.1:8080/ || exit 1\n'

DOCKERFILES = {
    "v1": _BASE + _HTTPD.format(version=1, content=1, flags="") + _HEALTH_OK.format(timeout="2s"),
    "v2": _BASE + _HTTPD.format(version=2, content=2, flags="-v ") + _HEALTH_OK.format(timeout="3s"),
    "v3": _BASE + _HTTPD.format(version=3, content=3, flags="-v ") + _HEALTH_OK.format(timeout="3s"),
    "unhealthy": _BASE
    + _HTTPD.format(version="bad", content="bad", flags="")
    + 'HEALTHCHECK --interval=500ms --timeout=2s --retries=1 CMD ["false"]\n',
    "exit": _BASE
    + 'CMD ["sh", "-c", "echo starting; echo \\"DB_PASSWORD=hunter2\\"; printf \\"\\\\033[31mfatal: no config\\\\033[0m\\\\n\\"; exit 3"]\n',
    "nohc": _BASE + _HTTPD.format(version="nohc", content="nohc", flags=""),
    "loop": _BASE + 'CMD ["sh", "-c", "echo up; sleep 0.5; exit 2"]\n',
}


@dataclass(frozen=True)
class BuiltImages:
    repository: str
    ids: dict[str, str]  # variant → sha256:… id

    def ref(self, variant: str) -> str:
        return f"{self.repository}:{variant}"

    def id(self, variant: str) -> str:
        return self.ids[variant]


class BuildFailed(Exception):
    pass


def build_images(api: APIClient, variants: list[str] | None = None) -> BuiltImages:
    """Build the test images under a fresh repository name; returns their refs and ids."""
    if not BUSYBOX.is_file():
        raise BuildFailed(f"{BUSYBOX} is missing: install Debian's busybox-static (see .ci/run)")
    repository = f"wingman-test-{uuid.uuid4().hex[:8]}/svc"
    ids: dict[str, str] = {}
    context = Path(tempfile.mkdtemp(prefix="wingman-images-"))
    try:
        shutil.copy2(BUSYBOX, context / "busybox")
        for variant in variants or list(DOCKERFILES):
            (context / f"Dockerfile.{variant}").write_text(DOCKERFILES[variant])
            tag = f"{repository}:{variant}"
            output: list[str] = []
            for event in api.build(
                path=str(context), dockerfile=f"Dockerfile.{variant}", tag=tag, rm=True, forcerm=True, decode=True
            ):
                if "error" in event:
                    hint = "" if "exec format" not in str(event) else " (is /bin/busybox the static one?)"
                    raise BuildFailed(f"building {tag} failed: {event['error']}{hint}")
                output.append(str(event.get("stream", "")))
            ids[variant] = str(api.inspect_image(tag)["Id"])
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return BuiltImages(repository, ids)


def remove_images(api: APIClient, images: BuiltImages) -> None:
    for variant in images.ids:
        try:
            api.remove_image(images.ref(variant), force=True)
        except Exception:  # already gone, or still used by a container a failed test left
            pass
