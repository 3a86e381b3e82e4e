"""Dask clients for the batch job: a LocalCluster of our own, or an existing scheduler.

Each worker runs one task at a time per thread, so the libraries inside a task must not
start thread pools of their own: polars sizes its pool from ``POLARS_MAX_THREADS`` once,
when it is imported, and LightGBM is given ``num_threads`` at each call. A LocalCluster's
worker processes get the variable in their environment before they start; on an existing
cluster, :class:`ThreadLimits` sets it on every worker before our first task imports
polars (a worker that already imported polars keeps its pool and logs a warning), and
the workers of ``docker/docker-compose.yml`` have it in their environment.

A LocalCluster's workers are this process's children, in its process group: a Ctrl-C
in the terminal reaches them too. They ignore it (:class:`IgnoreInterrupts`); this
process gets the KeyboardInterrupt and closes the cluster on its way out.

This module must not import polars (the plugins are unpickled on the workers before they
run).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.worker import Worker

__all__ = ["THREAD_LIMITS", "IgnoreInterrupts", "ThreadLimits", "dask_client"]

THREAD_LIMITS = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1"}
_log = logging.getLogger(__name__)


class ThreadLimits(WorkerPlugin):
    """Sets :data:`THREAD_LIMITS` in a worker's environment (where not already set)."""

    name = "credit-risk-thread-limits"
    idempotent = True

    def setup(self, worker: Worker) -> None:
        for name, value in THREAD_LIMITS.items():
            os.environ.setdefault(name, value)
        if "polars" in sys.modules:
            _log.warning(
                "worker %s imported polars before POLARS_MAX_THREADS was set: its thread "
                "pool keeps its size; start the worker with POLARS_MAX_THREADS=1",
                worker.address,
            )


class IgnoreInterrupts(WorkerPlugin):
    """Makes a worker process ignore SIGINT (for workers of our own LocalCluster)."""

    name = "credit-risk-ignore-interrupts"
    idempotent = True

    def setup(self, worker: Worker) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def dask_client(*, scheduler: str | None = None, workers: int | None = None) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler`` or, without one, of a new LocalCluster of
    ``workers`` single-threaded worker processes (closed on exit)."""
    if scheduler is not None:
        with Client(scheduler) as client:  # type: ignore[no-untyped-call]
            client.register_plugin(ThreadLimits())
            yield client
        return
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.WARNING,
            env=THREAD_LIMITS,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        client.register_plugin(IgnoreInterrupts())
        yield client
