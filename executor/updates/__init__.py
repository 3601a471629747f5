"""Updates: which allowlisted containers have a newer image in their registry.

Public face::

    watch = UpdateWatch(UpdateCheck(driver, credentials), UpdateStore(engine), audit, outbox)
    report = await watch.check(visible, now)      # /updates: everything available now
    report, new = await watch.announce(visible, now)  # the scheduled check: one outbox event
    await watch.get(update_id)                     # one update by its short id (Deploy buttons)
    await watch.pending()                          # announced and not deployed (weekly recall)

The parts: ``versions`` (policies and version tags, pure), ``credentials`` (a Docker
config.json), ``registry`` (the tag-list client), ``check`` (one check), ``store`` (the
``updates`` table), ``watch`` (on demand and scheduled).
"""

from executor.updates.check import CheckReport, Update, UpdateCheck
from executor.updates.credentials import Credential, RegistryCredentials
from executor.updates.registry import RegistryClient, RegistryProblem
from executor.updates.store import StoredUpdate, UpdateStore
from executor.updates.versions import ContainerPolicy, UpdatePolicy, newest_tag, parse_policy, policy_of
from executor.updates.watch import EVENT_KIND, UpdateWatch

__all__ = [
    "EVENT_KIND",
    "CheckReport",
    "ContainerPolicy",
    "Credential",
    "RegistryClient",
    "RegistryCredentials",
    "RegistryProblem",
    "StoredUpdate",
    "Update",
    "UpdateCheck",
    "UpdatePolicy",
    "UpdateStore",
    "UpdateWatch",
    "newest_tag",
    "parse_policy",
    "policy_of",
]
