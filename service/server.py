"""Server wiring: the runtime behind the servicers, and the gRPC server around them.

The server flavour is grpc's asyncio server (``benchmarks/bench_online.py``, figures in
``benchmarks/README.md``): bare, the synchronous thread-pool server answers more calls, but
every decision waits for its decision-log entry to be durable, and on the event loop that
wait holds no thread; on the thread pool each waiting call held one, and the threads'
GIL and futex hand-overs cost more than the calls. Score and ScoreStream are coroutines on
the loop; the other methods are plain functions, run on a thread pool by the innermost
interceptor (:mod:`service.blocking`). The
loop runs on a thread of its own, so this class keeps a synchronous face (``start``,
``stop``, ``wait``) for the CLI and the tests.

Start-up order: the port opens at once with the standard health service saying
``NOT_SERVING`` (and CreditRisk calls answering ``UNAVAILABLE``); the model is verified and
loaded, the feature snapshot read, every subject's decision computed (reasons follow in
the background); then health turns ``SERVING``. ``stop`` turns health ``NOT_SERVING``,
refuses new calls, lets in-flight calls finish within the grace period, writes the queued
inquiries and closes the store.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from audit.log import DecisionLog
from creditrisk.v1 import audit_pb2, audit_pb2_grpc, credit_risk_pb2, records_pb2, records_pb2_grpc
from features.store import FeatureStore
from features.warning_eval import evaluate_warnings
from models.decisions import DecisionBook
from models.model import RiskModel
from models.registry import ModelRegistry
from records.runtime import make_ingestor, make_pseudonymiser, open_store
from records.store import RecordStore
from service.alerts import AlertLog
from service.audit_servicer import AuditServicer
from service.blocking import BlockingMethods
from service.clients import ClientRegistry
from service.idempotency import IdempotencyCache
from service.inquiries import InquiryRecorder
from service.intake import RecordIntake
from service.interceptors import (
    AuthInterceptor,
    CallMetrics,
    DecodeInterceptor,
    ErrorInterceptor,
    InterceptorChain,
    ObservabilityInterceptor,
)
from service.monitoring import Monitoring
from service.quotas import QuotaBook
from service.records_servicer import RecordsServicer
from service.refresh import Refresher
from service.scoring import ScoredDecision, Scorer
from service.servicers import CreditRiskServicer, register
from service.watchlists import Watchlists
from settings import Settings

__all__ = ["CreditRiskServer", "ServiceRuntime", "load_runtime"]

_log = logging.getLogger("creditrisk.server")
SERVICE_NAME = "creditrisk.v1.CreditRisk"
_T = TypeVar("_T")


@dataclass
class ServiceRuntime:
    """Everything the servicers answer from, loaded and ready."""

    store: RecordStore
    features: FeatureStore
    model: RiskModel
    book: DecisionBook
    scorer: Scorer
    inquiries: InquiryRecorder | None
    decision_log: DecisionLog
    load_seconds: float
    intake: RecordIntake
    refresher: Refresher
    monitoring: Monitoring

    def close(self) -> None:
        self.refresher.close()  # finishes the queued refreshes (their alerts are logged)
        if self.inquiries is not None:
            self.inquiries.close()
        self.decision_log.close()
        self.features.flush()
        self.store.close()


def _snapshot_date(settings: Settings, features: FeatureStore) -> date:
    if settings.server.as_of is not None:
        return date.fromisoformat(settings.server.as_of)
    latest = features.latest_as_of()
    if latest is None:
        raise LookupError(
            "no feature snapshot of the running catalog in the store; run "
            "`credit-risk features materialise --as-of DATE` first"
        )
    return latest


def load_runtime(settings: Settings, *, record_inquiries: bool = True) -> ServiceRuntime:
    """Open the store, verify and load the model, load the features and decide everyone."""
    started = time.perf_counter()
    model = RiskModel.load(settings.data_dir, settings.server.model_version)
    store = open_store(settings)
    try:
        features = FeatureStore(
            store,
            home_province=settings.home_province,
            retention_years=settings.features.retention_years,
        )
        as_of = _snapshot_date(settings, features)
        features.load(as_of)
        book = DecisionBook(model, features)
        book.rebuild(
            evaluate_warnings(store, as_of, retention_years=settings.features.retention_years)
        )
        decision_log = DecisionLog(
            settings.audit_log_path,
            segment_bytes=settings.audit.segment_bytes,
            fsync=settings.audit.fsync,
            commit_delay=settings.audit.commit_delay_ms / 1000,
        )
        intake = RecordIntake(
            lambda: make_ingestor(settings, store.cursor()),
            max_batch_rows=settings.monitoring.max_batch_rows,
        )
        inquiries = None
        if record_inquiries:
            inquiries = InquiryRecorder(intake, flush_seconds=settings.server.inquiry_flush_seconds)
        scorer = Scorer(
            book,
            make_pseudonymiser(settings),
            inquiries=inquiries,
            idempotency=IdempotencyCache[ScoredDecision](
                settings.server.idempotency_window_seconds,
                settings.server.idempotency_max_entries,
            ),
            non_inquiry_purposes=settings.server.non_inquiry_purposes,
            decision_log=decision_log,
            log_gender=settings.audit.fairness_by_gender,
        )
        watchlists = Watchlists(store)
        alerts = AlertLog(store)
        refresher = Refresher(
            features,
            book,
            watchlists,
            alerts,
            decision_log,
            retention_years=settings.features.retention_years,
            score_move_points=settings.monitoring.score_move_points,
        )
        monitoring = Monitoring(
            scorer,
            watchlists,
            alerts,
            max_subjects=settings.monitoring.max_watch_subjects,
            max_streams=settings.monitoring.max_watch_streams,
            page=settings.monitoring.alert_batch,
            log_gender=settings.audit.fairness_by_gender,
        )
    except BaseException:
        store.close()
        raise
    elapsed = time.perf_counter() - started
    _log.info(
        "loaded model %s and %d subjects' decisions as of %s in %.1f s",
        model.version,
        len(book),
        as_of,
        elapsed,
    )
    return ServiceRuntime(
        store,
        features,
        model,
        book,
        scorer,
        inquiries,
        decision_log,
        elapsed,
        intake,
        refresher,
        monitoring,
    )


def _read(path: Path | None, what: str) -> bytes:
    if path is None:
        raise ValueError(f"server.tls.{what} is required for TLS")
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"server.tls.{what}: cannot read {path} ({err.strerror})") from None


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from the settings; None when no certificate is configured."""
    tls = settings.server.tls
    if tls.cert_file is None and tls.key_file is None and tls.client_ca_file is None:
        return None
    key = _read(tls.key_file, "key_file")
    chain = _read(tls.cert_file, "cert_file")
    client_ca = _read(tls.client_ca_file, "client_ca_file") if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


class CreditRiskServer:
    """The gRPC server: bound at construction (``port`` is the real one, also for 0)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        server_settings = settings.server
        self.metrics = CallMetrics()
        self.clients = ClientRegistry(settings.clients_path)
        self.quotas = QuotaBook()
        self.registry = ModelRegistry(settings.data_dir)
        self.health = health.aio.HealthServicer()
        self.servicer = CreditRiskServicer(
            self.quotas,
            self.metrics,
            self.registry,
            max_stream_items=server_settings.max_stream_items,
        )
        self.records = RecordsServicer(
            self.quotas, max_stream_items=server_settings.max_stream_items
        )
        self.audit = AuditServicer(
            settings.data_dir,
            home_province=settings.home_province,
            retention_years=settings.features.retention_years,
            log_directory=settings.audit_log_path,
            fairness_by_gender=settings.audit.fairness_by_gender,
        )
        self.runtime: ServiceRuntime | None = None
        self.metrics_port: int | None = None
        self._metrics_httpd: Any = None
        self._stopped = threading.Event()
        self._terminated = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name="grpc-event-loop", daemon=True
        )
        self._loop_thread.start()
        try:
            self._server, self.port, self.tls = self._on_loop(self._build())
        except BaseException:
            self._close_loop()
            raise
        if not self.tls and server_settings.host not in ("127.0.0.1", "localhost", "::1"):
            _log.warning(
                "serving without TLS on %s:%s: API keys and answers cross the network in "
                "clear; set server.tls.cert_file and key_file",
                server_settings.host,
                self.port,
            )

    def _on_loop(self, work: Coroutine[Any, Any, _T]) -> _T:
        """Run ``work`` on the server's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    async def _build(self) -> tuple[grpc.aio.Server, int, bool]:
        """The server, its port and whether it serves TLS (made on the loop: grpc binds
        an asyncio server to the loop it is made on)."""
        settings = self.settings
        server_settings = settings.server
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", server_settings.max_message_bytes),
            ("grpc.max_send_message_length", server_settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        # The methods other than Score and ScoreStream run on this pool; each open
        # WatchAlerts stream holds a thread: they get their own share of it.
        threads = server_settings.workers + settings.monitoring.max_watch_streams
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc-call")
        server = grpc.aio.server(
            migration_thread_pool=self._pool,
            interceptors=[
                InterceptorChain(
                    [
                        ObservabilityInterceptor(self.metrics),
                        ErrorInterceptor(),
                        AuthInterceptor(self.clients, self.quotas),
                        DecodeInterceptor(),
                    ],
                    adapt=BlockingMethods(self._pool).adapt,
                )
            ],
            options=options,
            maximum_concurrent_rpcs=None,
        )
        register(self.servicer, server)
        records_pb2_grpc.add_RecordsServicer_to_server(  # type: ignore[no-untyped-call]
            self.records, server
        )
        audit_pb2_grpc.add_AuditServicer_to_server(  # type: ignore[no-untyped-call]
            self.audit, server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                credit_risk_pb2.DESCRIPTOR.services_by_name["CreditRisk"].full_name,
                audit_pb2.DESCRIPTOR.services_by_name["Audit"].full_name,
                records_pb2.DESCRIPTOR.services_by_name["Records"].full_name,
                health.SERVICE_NAME,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{server_settings.host}:{server_settings.port}"
        credentials = server_credentials(settings)
        try:  # the asyncio server raises where the sync one returned port 0
            if credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, credentials)
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"cannot listen on {address} (in use, or not an address of this host)")
        return server, port, credentials is not None

    async def _set_health(self, status: int) -> None:
        await self.health.set("", status)
        await self.health.set(SERVICE_NAME, status)

    def start(self) -> None:
        """Open the port (health NOT_SERVING until :meth:`attach`) and the metrics endpoint."""
        self._on_loop(self._server.start())
        port = self.settings.server.metrics_port
        if port is not None:
            self._metrics_httpd, _ = start_http_server(
                port, addr=self.settings.server.metrics_host, registry=self.metrics.registry
            )
            self.metrics_port = int(self._metrics_httpd.server_port)

    def attach(self, runtime: ServiceRuntime) -> None:
        """Serve from ``runtime`` and report SERVING; the runtime's refresher computes the
        reasons of every decision behind (a subject asked about before its turn is
        explained on the spot)."""
        self.runtime = runtime
        self.servicer.attach(runtime.scorer, runtime.monitoring)
        if self.settings.server.prepare_answers:  # what serving asks for: entries, answers
            runtime.refresher.add_preparer(runtime.scorer.prepare)
            runtime.refresher.add_preparer(self.servicer.prepare)
        self.records.attach(runtime.intake, runtime.refresher.submit)
        self.audit.attach(runtime.decision_log, runtime.store, runtime.scorer.pseudonymiser)
        self._on_loop(self._set_health(health_pb2.HealthCheckResponse.SERVING))

    def load_and_serve(self) -> None:
        self.attach(load_runtime(self.settings))

    def stop(self, grace: float | None = None) -> None:
        """Drain: refuse new calls, let in-flight ones finish within ``grace`` seconds,
        then release everything. Safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.servicer.stopping.set()  # open alert streams end; clients resume by alert id
        wait = self.settings.server.grace_seconds if grace is None else grace
        try:
            self._on_loop(self.health.enter_graceful_shutdown())
            self._on_loop(self._server.stop(wait))
            self._drain_pool(wait)
        finally:
            self._close_loop()
            if self._metrics_httpd is not None:
                self._metrics_httpd.shutdown()
                self._metrics_httpd.server_close()
            if self.runtime is not None:
                self.runtime.close()
            self._terminated.set()

    def _drain_pool(self, grace: float) -> None:
        """Wait for the methods still on the thread pool (cancelled by now, they end as
        soon as they next touch their call, which goes through the loop: so the loop runs
        until they are done)."""
        drained = threading.Thread(target=self._pool.shutdown, name="pool-drain", daemon=True)
        drained.start()
        drained.join(grace + 5)
        if drained.is_alive():
            _log.warning("calls still running on the thread pool after the grace period")

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join()
        self._loop.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped (True) or ``timeout`` seconds passed."""
        return self._terminated.wait(timeout)
