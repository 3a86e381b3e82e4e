"""The CreditRisk servicer: decode, call the domain, encode. Problems are raised, not
handled: :class:`service.interceptors.ErrorInterceptor` gives them their status, except
inside ScoreStream, where each bad item is answered with its own error and the stream goes
on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import grpc
from google.protobuf import timestamp_pb2

from creditrisk.v1 import credit_risk_pb2, credit_risk_pb2_grpc
from models.decisions import SubjectDecision
from models.model import RiskModel
from models.registry import MODEL_FILE, ModelNotFoundError, ModelRegistry
from service.codec import (
    GRADE_VALUES,
    ScoreResponseEncoder,
    decode_score_request,
    decode_warnings_request,
    encode_warnings_response,
)
from service.durable import DurableWaiter
from service.interceptors import CallInfo, CallMetrics, current_call
from service.monitoring import Monitoring
from service.monitoring_codec import decode_alert_kinds, decode_watchlist, encode_alert
from service.problems import InvalidRequest, NotFound, NotReady, ResourceLimit
from service.quotas import QuotaBook
from service.scoring import ScoredDecision, Scorer
from service.status import failure_of, item_error

__all__ = ["CreditRiskServicer"]

_MAX_IN_FLIGHT = 512  # stream decisions read ahead of the answers sent, at most
_END = object()


_SCORE = "Score"
_WARNINGS = "GetWarnings"
_ENGINES = {"lightgbm": credit_risk_pb2.ENGINE_LIGHTGBM, "lleaves": credit_risk_pb2.ENGINE_LLEAVES}


class CreditRiskServicer(credit_risk_pb2_grpc.CreditRiskServicer):
    def __init__(
        self,
        quotas: QuotaBook,
        metrics: CallMetrics,
        registry: ModelRegistry,
        *,
        max_stream_items: int,
    ) -> None:
        self.scorer: Scorer | None = None
        self.monitoring: Monitoring | None = None
        self.stopping = threading.Event()  # set on shutdown: open alert streams end
        self.quotas = quotas
        self.metrics = metrics
        self.registry = registry
        self.max_stream_items = max_stream_items
        self.encoder = ScoreResponseEncoder()
        self._durable: DurableWaiter | None = None
        self._stream_ok = metrics.stream_items.labels("ScoreStream", "OK")  # looked up once

    def attach(self, scorer: Scorer, monitoring: Monitoring | None = None) -> None:
        """Start answering from ``scorer`` and ``monitoring`` (until then: UNAVAILABLE)."""
        self.monitoring = monitoring
        self.scorer = scorer

    def prepare(self, decisions: list[SubjectDecision]) -> None:
        """Serialise ahead of the requests these subjects' answer parts (see
        :meth:`ScoreResponseEncoder.prepare`)."""
        self.encoder.prepare(decisions, self._ready().book.warning_rules_version)

    def _waiter(self) -> DurableWaiter:
        """The waiter for the scorer's decision-log entries on the server's event loop
        (the running one: Score and ScoreStream run there, and only there)."""
        log = self._ready().decision_log
        if self._durable is None or self._durable.log is not log:
            self._durable = DurableWaiter(asyncio.get_running_loop(), log)
        return self._durable

    def _monitoring(self) -> Monitoring:
        if self.monitoring is None:
            raise NotReady("the service is loading its model and features; retry shortly")
        return self.monitoring

    def _ready(self) -> Scorer:
        if self.scorer is None:
            raise NotReady("the service is loading its model and features; retry shortly")
        return self.scorer

    # Score and ScoreStream run on the event loop and answer serialised ScoreResponse bytes
    # (see register()); a decision is answered once its log entry is durable, and waiting
    # for that holds no thread.

    async def Score(  # noqa: N802 - gRPC method name
        self, request: credit_risk_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        query = decode_score_request(request)
        client = current_call().client
        assert client is not None
        answer = self._ready().decide(query, client, _SCORE, wait_for_log=False)
        encoded = self.encoder.encode(answer, explain=query.explain)
        await self._waiter().durable(answer)
        return encoded

    async def ScoreStream(  # noqa: N802
        self,
        requests: AsyncIterator[credit_risk_pb2.ScoreRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[bytes]:
        """Decides each request as it arrives and sends each answer once its log entry is
        durable, in request order. A reader task decides the requests (up to
        ``_MAX_IN_FLIGHT`` ahead of the answers sent), so the decisions in flight share the
        log's group commits, and a client that waits for each answer before sending the
        next is answered as soon as its entry is durable."""
        call = current_call()
        scorer = self._ready()
        waiter = self._waiter()
        decided: asyncio.Queue[object] = asyncio.Queue()  # (answer, bytes), then an end
        room = asyncio.Semaphore(_MAX_IN_FLIGHT)

        async def read() -> None:
            try:
                index = 0
                async for request in requests:
                    if index >= self.max_stream_items:
                        raise ResourceLimit(
                            f"a ScoreStream call carries at most {self.max_stream_items} "
                            "requests; open a new stream for more"
                        )
                    await room.acquire()
                    decided.put_nowait(self._stream_item(scorer, call, index, request))
                    index += 1
                decided.put_nowait(_END)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # handed to the answers, which end the call with it
                decided.put_nowait(err)

        reader = asyncio.ensure_future(read())  # a task in this call's context
        try:
            while True:
                batch = [await decided.get()]
                while not decided.empty():
                    batch.append(decided.get_nowait())
                # One log, committed in order: the last entry durable means all are.
                for item in reversed(batch):
                    if isinstance(item, tuple) and item[0] is not None:
                        await waiter.durable(item[0])
                        break
                for item in batch:
                    if not isinstance(item, tuple):
                        if isinstance(item, BaseException):
                            raise item
                        return  # _END
                    answer, encoded = item
                    if answer is not None:
                        answer.durable()  # at once: raises a failed write's error
                    room.release()
                    yield encoded
        finally:
            reader.cancel()

    def _stream_item(
        self,
        scorer: Scorer,
        call: CallInfo,
        index: int,
        request: credit_risk_pb2.ScoreRequest,
    ) -> tuple[ScoredDecision | None, bytes]:
        """One stream request's answer: a decision (not yet durable), or its own error."""
        client = call.client
        assert client is not None
        try:
            self.quotas.take(client)
            query = decode_score_request(request)
            answer = scorer.decide(query, client, _SCORE, "ScoreStream", wait_for_log=False)
            encoded = self.encoder.encode(answer, explain=query.explain, stream_index=index)
            self._stream_ok.inc()
            return answer, encoded
        except Exception as err:
            failure = failure_of(err)
            if failure.code is grpc.StatusCode.INTERNAL:
                raise  # a fault of ours ends the stream with INTERNAL, logged
            self.metrics.stream_items.labels("ScoreStream", failure.code.name).inc()
            error = credit_risk_pb2.ScoreResponse(
                request_id=request.request_id,
                stream_index=index,
                error=item_error(failure, request.request_id or call.request_id),
            )
            return None, error.SerializeToString()

    def GetWarnings(  # noqa: N802
        self, request: credit_risk_pb2.WarningsRequest, context: grpc.ServicerContext
    ) -> credit_risk_pb2.WarningsResponse:
        query = decode_warnings_request(request)
        client = current_call().client
        assert client is not None
        answer = self._ready().decide(query, client, _WARNINGS)
        return encode_warnings_response(answer, query.min_severity)

    def Watch(  # noqa: N802
        self, request: credit_risk_pb2.WatchlistRequest, context: grpc.ServicerContext
    ) -> credit_risk_pb2.WatchlistResponse:
        client = current_call().client
        assert client is not None
        added, watched = self._monitoring().watch(client.name, decode_watchlist(request))
        return credit_risk_pb2.WatchlistResponse(changed=added, watched=watched)

    def Unwatch(  # noqa: N802
        self, request: credit_risk_pb2.WatchlistRequest, context: grpc.ServicerContext
    ) -> credit_risk_pb2.WatchlistResponse:
        client = current_call().client
        assert client is not None
        removed, watched = self._monitoring().unwatch(client.name, decode_watchlist(request))
        return credit_risk_pb2.WatchlistResponse(changed=removed, watched=watched)

    def WatchAlerts(  # noqa: N802
        self, request: credit_risk_pb2.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[credit_risk_pb2.Alert]:
        """Alerts after the client's last acknowledged id, then each new one, until the
        client cancels or the server stops (the client reconnects with its last id)."""
        client = current_call().client
        assert client is not None
        ended = threading.Event()
        context.add_callback(ended.set)  # the client went away

        def active() -> bool:
            return not (ended.is_set() or self.stopping.is_set())

        after = request.after_alert_id if request.HasField("after_alert_id") else None
        alerts = self._monitoring().alerts_for(
            client.name, after, decode_alert_kinds(request), active
        )
        for alert in alerts:
            yield encode_alert(alert)

    def GetModelInfo(  # noqa: N802
        self, request: credit_risk_pb2.ModelInfoRequest, context: grpc.ServicerContext
    ) -> credit_risk_pb2.ModelInfo:
        serving = self._ready().book.model
        if request.version and request.version != serving.version:
            if len(request.version) > 64 or not request.version.isprintable():
                raise InvalidRequest("version", "malformed", "version is not a model version")
            try:
                model = RiskModel(self.registry.load(request.version), compiled=False)
            except ModelNotFoundError:
                raise NotFound(
                    "no registered model of that version (see GetModelInfo without a version)"
                ) from None
        else:
            model = serving
        return _model_info(
            model,
            current=model.version == self.registry.current(),
            warning_rules_version=self._ready().book.warning_rules_version,
        )


def _model_info(
    model: RiskModel, *, current: bool, warning_rules_version: str
) -> credit_risk_pb2.ModelInfo:
    manifest = model.manifest
    card = model.scorecard
    created = timestamp_pb2.Timestamp()
    created.FromJsonString(manifest["created_at"])
    metrics = {
        name: float(value)
        for name, value in manifest.get("metrics", {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    info = credit_risk_pb2.ModelInfo(
        version=model.version,
        created_at=created,
        catalog_hash=manifest["catalog_hash"],
        model_hash=manifest["artifacts"][MODEL_FILE],
        metrics=metrics,
        score_scale=credit_risk_pb2.ScoreScale(
            min_score=card.min_score,
            max_score=card.max_score,
            base_score=round(card.base_points),
            base_odds=card.base_odds,
            points_to_double_odds=card.pdo,
        ),
        engine=_ENGINES.get(model.engine, credit_risk_pb2.ENGINE_UNSPECIFIED),
        engine_reason=model.engine_reason,
        features=list(model.feature_names),
        warning_rules_version=warning_rules_version,
        current=current,
    )
    bounds = (0.0, *card.grade_bands, 1.0)
    for position, letter in enumerate(card.grade_names):
        info.grade_bands.add(
            grade=GRADE_VALUES[letter], pd_from=bounds[position], pd_to=bounds[position + 1]
        )
    return info


def _as_bytes(response: bytes | credit_risk_pb2.ScoreResponse) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def register(servicer: CreditRiskServicer, server: grpc.Server) -> None:
    """Add the CreditRisk service, as the generated ``add_CreditRiskServicer_to_server``
    does, except that Score and ScoreStream answers may be pre-serialised bytes."""
    score = credit_risk_pb2.ScoreRequest.FromString
    handlers = {
        "Score": grpc.unary_unary_rpc_method_handler(
            servicer.Score, request_deserializer=score, response_serializer=_as_bytes
        ),
        "ScoreStream": grpc.stream_stream_rpc_method_handler(
            servicer.ScoreStream, request_deserializer=score, response_serializer=_as_bytes
        ),
        "GetWarnings": grpc.unary_unary_rpc_method_handler(
            servicer.GetWarnings,
            request_deserializer=credit_risk_pb2.WarningsRequest.FromString,
            response_serializer=credit_risk_pb2.WarningsResponse.SerializeToString,
        ),
        "WatchAlerts": grpc.unary_stream_rpc_method_handler(
            servicer.WatchAlerts,
            request_deserializer=credit_risk_pb2.WatchRequest.FromString,
            response_serializer=credit_risk_pb2.Alert.SerializeToString,
        ),
        "Watch": grpc.unary_unary_rpc_method_handler(
            servicer.Watch,
            request_deserializer=credit_risk_pb2.WatchlistRequest.FromString,
            response_serializer=credit_risk_pb2.WatchlistResponse.SerializeToString,
        ),
        "Unwatch": grpc.unary_unary_rpc_method_handler(
            servicer.Unwatch,
            request_deserializer=credit_risk_pb2.WatchlistRequest.FromString,
            response_serializer=credit_risk_pb2.WatchlistResponse.SerializeToString,
        ),
        "GetModelInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetModelInfo,
            request_deserializer=credit_risk_pb2.ModelInfoRequest.FromString,
            response_serializer=credit_risk_pb2.ModelInfo.SerializeToString,
        ),
    }
    name = credit_risk_pb2.DESCRIPTOR.services_by_name["CreditRisk"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    # Registered methods skip grpc's per-call search through the generic handlers.
    server.add_registered_method_handlers(name, handlers)
