"""Loading the mounted router ConfigMap, with hot reload and last-good-config fallback.

The operator writes the router config (:mod:`quartermaster.api.routerconfig`) into a ConfigMap that is
mounted into the router pod as a file. The kubelet replaces mounted ConfigMap files atomically (symlink
swap), so :class:`ConfigWatcher` simply re-reads the file every ``interval_s`` seconds and compares the
bytes' SHA-256 with the last attempt; when they differ it parses, validates (schema version, content
hash, references) and compiles a new :class:`~quartermaster.router.table.RoutingTable` in a worker
thread, then swaps it in.

A broken update (invalid JSON, wrong schema version, hash mismatch, unreadable reference, ...) never
replaces a good table: the router keeps serving the last good configuration and reports the problem in
:class:`ConfigState` — ``/readyz`` says ``"status": "degraded"`` with the error, and the metrics
``quartermaster_router_config_stale`` = 1 and ``..._config_last_reload_success`` = 0. The same broken
bytes are not re-parsed on every poll; a later good update clears the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread

from quartermaster.api.routerconfig import RouterConfigError, load_router_config
from quartermaster.router.metrics import RouterMetrics
from quartermaster.router.table import IndexOptions, ReferenceMounts, RoutingTable, compile_table

logger = logging.getLogger(__name__)


@dataclass
class ConfigState:
    """The table being served and the outcome of the last load attempt."""

    table: RoutingTable | None = None
    loaded_at: float | None = None
    last_attempt_at: float | None = None
    last_error: str | None = None
    attempted_digest: str | None = None
    reloads: int = 0
    failures: int = 0

    @property
    def ready(self) -> bool:
        return self.table is not None

    @property
    def stale(self) -> bool:
        """True while a good table is served but the latest document could not be used."""
        return self.table is not None and self.last_error is not None

    def readiness(self) -> dict[str, Any]:
        """The ``/readyz`` document."""
        status = "not-ready" if self.table is None else ("degraded" if self.stale else "ok")
        return {
            "status": status,
            "configVersion": None if self.table is None else self.table.version,
            "loadedAt": self.loaded_at,
            "stale": self.stale,
            "lastError": self.last_error,
            "reloads": self.reloads,
            "failures": self.failures,
        }


def load_table(data: bytes, *, mounts: ReferenceMounts, index: IndexOptions | None = None) -> RoutingTable:
    """Parse, validate and compile one document (blocking; run it in a thread)."""
    config = load_router_config(data)
    return compile_table(config, mounts=mounts, index=index)


class ConfigWatcher:
    """Polls ``path`` and keeps :attr:`state` up to date.

    ``prepare`` runs in the worker thread right after a new table is compiled (blocking set-up such as
    loading a trained quality estimator); ``apply(table, prepared)`` then runs in the event loop before
    the table is served (the app updates the upstream pool's endpoints). An exception in either counts
    as a failed reload.
    """

    def __init__(
        self,
        path: Path,
        *,
        metrics: RouterMetrics,
        mounts: ReferenceMounts | None = None,
        interval_s: float = 2.0,
        index: IndexOptions | None = None,
        prepare: Callable[[RoutingTable], Any] | None = None,
        apply: Callable[[RoutingTable, Any], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.metrics = metrics
        self.mounts = mounts or ReferenceMounts()
        self.interval_s = interval_s
        self.index = index or IndexOptions()
        self.prepare = prepare
        self.apply = apply
        self.clock = clock
        self.state = ConfigState()
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> bool:
        """Read the file once; load it if its bytes changed. Returns True when a new table was swapped in."""
        now = self.clock()
        try:
            data = await anyio.to_thread.run_sync(self.path.read_bytes)
        except OSError as exc:
            self._fail(
                now, None, f"cannot read {self.path}: {exc.strerror or exc}; mount the router ConfigMap"
            )
            return False
        digest = hashlib.sha256(data).hexdigest()
        if digest == self.state.attempted_digest:
            return False
        try:
            table, prepared = await anyio.to_thread.run_sync(self._load, data)
            if self.apply is not None:
                self.apply(table, prepared)
        except (RouterConfigError, ValueError) as exc:
            self._fail(now, digest, str(exc))
            return False
        except Exception as exc:  # a bug or an unexpected environment problem: keep serving
            logger.exception("router config %s: unexpected error while loading", self.path)
            self._fail(now, digest, f"{type(exc).__name__}: {exc}")
            return False
        s = self.state
        s.table, s.loaded_at, s.last_attempt_at, s.last_error = table, now, now, None
        s.attempted_digest = digest
        s.reloads += 1
        self.metrics.config_reloads.labels(result="success").inc()
        self.metrics.config_last_reload_success.set(1)
        self.metrics.config_stale.set(0)
        self.metrics.set_config_info(table.version, table.digest)
        logger.info(
            "router config %s loaded: %s (%d clusters, %d representatives)",
            self.path,
            table.version,
            len(table.clusters),
            len(table.index),
        )
        return True

    def _load(self, data: bytes) -> tuple[RoutingTable, Any]:
        table = load_table(data, mounts=self.mounts, index=self.index)
        return table, (None if self.prepare is None else self.prepare(table))

    def _fail(self, now: float, digest: str | None, message: str) -> None:
        s = self.state
        first_time = digest is None or digest != s.attempted_digest or s.last_error != message
        s.last_attempt_at, s.last_error = now, message
        if digest is not None:
            s.attempted_digest = digest
        if first_time:
            s.failures += 1
            self.metrics.config_reloads.labels(result="failure").inc()
            if s.table is not None:
                logger.error(
                    "router config %s rejected, still serving %s: %s", self.path, s.table.version, message
                )
            else:
                logger.error("router config %s rejected, no configuration to serve: %s", self.path, message)
        self.metrics.config_last_reload_success.set(0)
        self.metrics.config_stale.set(1 if s.table is not None else 0)

    async def run(self) -> None:
        """Poll forever (cancel the task to stop)."""
        while True:
            await self.check()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        """Start polling in the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="router-config-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
