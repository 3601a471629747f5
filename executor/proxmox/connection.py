"""One Proxmox API connection: proxmoxer calls run off the event loop, failures worded.

proxmoxer is synchronous, so every call runs in the connection's own small thread pool.
Nothing is sent until the first call (the executor starts while Proxmox is down), and the
API client is made again after Proxmox was unreachable or refused a ticket. Every failure
becomes one of the executor's errors (``executor.errors``) saying what was asked of whom.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException

from executor.errors import ActionError, ActionFailed, Unavailable
from executor.proxmox.settings import cause
from executor.proxmox.values import one_line

T = TypeVar("T")


class Connection:
    """The API client for one host, its credentials, TLS check and request timeout."""

    def __init__(
        self, address: tuple[str, int], login: dict[str, Any], verify: bool | str, request_timeout: float, workers: int
    ) -> None:
        """``address``, ``login`` and ``verify`` are what ``executor.proxmox.settings`` parsed."""
        self.host, self.port = address
        self._api_kwargs = dict(login)
        self.principal: str = self._api_kwargs.pop("principal")
        self.uses_token = "token_name" in self._api_kwargs
        self.verify = verify
        self.request_timeout = request_timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wingman-proxmox")
        self._client: ProxmoxAPI | None = None
        self._client_lock = threading.Lock()

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._forget_client()

    async def run(self, what: str, fn: Callable[[ProxmoxAPI], T]) -> T:
        """Run ``fn(api)`` in the pool; every failure becomes one of the executor's errors.

        ``what`` names the request in errors ("the start of VM 101").
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, what, fn)

    def _call(self, what: str, fn: Callable[[ProxmoxAPI], T]) -> T:
        try:
            return fn(self._api())
        except ResourceException as exc:
            raise self._api_error(what, exc) from None
        except AuthenticationError:
            self._forget_client()
            raise Unavailable(
                f"Proxmox at {self.where} refused the login of {self.principal} (401): check PROXMOX_USER and PROXMOX_PASSWORD"
            ) from None
        except requests.exceptions.SSLError as exc:
            self._forget_client()
            raise Unavailable(
                f"cannot verify the TLS certificate of Proxmox at {self.where}: {cause(exc)};"
                " give its CA certificate with PROXMOX_CA_BUNDLE"
            ) from None
        except requests.exceptions.Timeout:
            self._forget_client()
            raise Unavailable(f"Proxmox at {self.where} did not answer within {self.request_timeout:g} s") from None
        except (requests.exceptions.RequestException, OSError) as exc:
            self._forget_client()
            raise Unavailable(f"Proxmox at {self.where} is unreachable: {cause(exc)}") from None

    def _api_error(self, what: str, exc: ResourceException) -> ActionError:
        status = int(exc.status_code)
        message = one_line(str(exc.content or exc.status_message or ""))
        errors = exc.errors
        if isinstance(errors, Mapping) and errors:
            message = f"{message}: " + "; ".join(f"{k}: {one_line(str(v))}" for k, v in sorted(errors.items()))
        if status == 401:
            self._forget_client()
            setting = "PROXMOX_TOKEN" if self.uses_token else "PROXMOX_USER and PROXMOX_PASSWORD"
            return Unavailable(
                f"Proxmox at {self.where} refused the credentials of {self.principal} (401): check {setting}"
            )
        if status == 403:
            return ActionFailed(f"Proxmox refused {what} (403 {message}): {self.principal} lacks a privilege")
        if status >= 500:
            return Unavailable(f"Proxmox at {self.where} failed {what} ({status} {message})")
        return ActionFailed(f"Proxmox rejected {what} ({status} {message})")

    def _api(self) -> ProxmoxAPI:
        with self._client_lock:
            if self._client is None:
                # A ticket login (user/password) POSTs /access/ticket here, in a worker.
                self._client = ProxmoxAPI(
                    self.host,
                    port=self.port,
                    verify_ssl=self.verify,
                    timeout=self.request_timeout,
                    **self._api_kwargs,
                )
            return self._client

    def _forget_client(self) -> None:
        with self._client_lock:
            self._client = None
