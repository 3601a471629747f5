"""The pull tally and the digest check, fed the events and inspects the engine really sends."""

from __future__ import annotations

from bot.formatting import progress_line
from executor.pinning import ImagePin
from executor.pulling import PullTally, digest_problem, human_bytes
from policy.images import parse_image_reference

APPROVED = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
REF = parse_image_reference("registry.example:5000/team/web:1.2.4")
PIN = ImagePin(REF.text, "registry", APPROVED)

# Docker 20.10's pull stream for an image with one layer here and one to download.
EVENTS = [
    {"status": "Pulling from team/web", "id": f"registry.example:5000/team/web@{APPROVED}"},
    {"status": "Already exists", "progressDetail": {}, "id": "fbaea367bff9"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "3c9e1a0c2f1b"},
    {"status": "Downloading", "progressDetail": {"current": 100_000, "total": 401_000}, "progress": "[=>  ]", "id": "3c9e1a0c2f1b"},
]
REST = [
    {"status": "Verifying Checksum", "progressDetail": {}, "id": "3c9e1a0c2f1b"},
    {"status": "Download complete", "progressDetail": {}, "id": "3c9e1a0c2f1b"},
    {"status": "Extracting", "progressDetail": {"current": 401_000, "total": 401_000}, "id": "3c9e1a0c2f1b"},
    {"status": "Pull complete", "progressDetail": {}, "id": "3c9e1a0c2f1b"},
    {"status": f"Digest: {APPROVED}"},
    {"status": f"Status: Downloaded newer image for registry.example:5000/team/web@{APPROVED}"},
]


def test_the_tally_counts_layers_and_bytes_as_the_stream_goes() -> None:
    now = [10.0]
    tally = PullTally(clock=lambda: now[0])
    tally.start()
    for event in EVENTS:
        tally.add(event)
    now[0] = 12.0
    halfway = tally.figures()
    assert (halfway.layers, halfway.layers_done, halfway.layers_present) == (2, 1, 1)
    assert (halfway.bytes_done, halfway.bytes_total, halfway.seconds) == (100_000, 401_000, 2.0)
    for event in [*REST, "not an event", {"error": "toomanyrequests:\n rate limited"}]:
        tally.add(event)
    tally.end()
    done = tally.figures()
    assert (done.layers, done.layers_done, done.bytes_done) == (2, 2, 401_000)
    assert tally.digest == APPROVED and tally.errors == ["toomanyrequests: rate limited"]
    assert done.summary() == "2 layers (1 already here), 401 kB in 2 s"


def test_the_chat_shows_the_pull_figures() -> None:
    line = progress_line({"stage": "pulling", "layers": 3, "layers_done": 1, "layers_present": 1, "bytes_done": 4_200_000, "bytes_total": 12_000_000, "elapsed": 5.2})
    assert line == "… pulling: 1 of 3 layers (1 already here), 4.2 MB of 12 MB (5 s)"
    assert progress_line({"stage": "pulled", "layers": 2, "layers_done": 2, "layers_present": 0, "bytes_done": 812, "bytes_total": 812, "elapsed": 1}) == "… pulled: 2 of 2 layers, 812 B (1 s)"
    assert progress_line({"stage": "pulling", "layers": "x"}) == "… pulling"
    assert [human_bytes(n) for n in (0, 999, 1000, 1_234_567, 3_400_000_000)] == ["0 B", "999 B", "1.0 kB", "1.2 MB", "3.40 GB"]


def test_the_image_must_go_by_the_approved_digest_in_its_repository() -> None:
    inspect = {"RepoDigests": [f"registry.example:5000/team/web@{APPROVED}"]}
    assert digest_problem(inspect, REF, PIN, APPROVED) is None
    assert digest_problem(inspect, REF, PIN, None) is None  # it was here already
    assert digest_problem(inspect, REF, PIN, OTHER) == "the registry gave sha256:bbbb…bbbb, not the approved sha256:aaaa…aaaa"
    elsewhere = {"RepoDigests": [f"registry.example:5000/other/web@{APPROVED}", f"registry.example:5000/team/web@{OTHER}"]}
    assert digest_problem(elsewhere, REF, PIN, None) == "the image at hand is sha256:bbbb…bbbb, not the approved sha256:aaaa…aaaa"
    assert digest_problem({}, REF, PIN, None) == "the image at hand has no digest in registry.example:5000/team/web; the approved one is sha256:aaaa…aaaa"
