"""The CreditRisk servicer: decode, call the domain, encode. Problems are raised, not
handled: :class:`service.interceptors.ErrorInterceptor` gives them their status, except
inside ScoreStream, where each bad item is answered with its own error and the stream goes
on."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator

import grpc
from google.protobuf import timestamp_pb2

from creditrisk.v1 import credit_risk_pb2, credit_risk_pb2_grpc
from models.model import RiskModel
from models.registry import MODEL_FILE, ModelNotFoundError, ModelRegistry
from service.codec import (
    GRADE_VALUES,
    ScoreResponseEncoder,
    decode_score_request,
    decode_warnings_request,
    encode_warnings_response,
)
from service.interceptors import CallMetrics, current_call
from service.monitoring import Monitoring
from service.monitoring_codec import decode_alert_kinds, decode_watchlist, encode_alert
from service.problems import InvalidRequest, NotFound, NotReady, ResourceLimit
from service.quotas import QuotaBook
from service.scoring import ScoredDecision, Scorer
from service.status import failure_of, item_error

__all__ = ["CreditRiskServicer"]

_MAX_IN_FLIGHT = 512  # stream decisions waiting for their log entry, at most
_POLL_SECONDS = 0.0005  # with answers waiting: how long to wait for a next request first
_END = object()


def _sendable(answer: ScoredDecision | None) -> bool:
    return answer is None or answer.logged is None or answer.logged.done()


def _when_durable(item: tuple[ScoredDecision | None, bytes]) -> bytes:
    """A stream item's answer, once its decision is in the log (an error item at once)."""
    answer, encoded = item
    if answer is not None:
        answer.durable()
    return encoded


def _read_behind(
    requests: Iterator[credit_risk_pb2.ScoreRequest], limit: int
) -> queue.Queue[object]:
    """The stream's requests, read by a thread into a bounded queue (``(index, request)``
    items, then the end marker, or the exception that ended the reading)."""
    inbox: queue.Queue[object] = queue.Queue(maxsize=_MAX_IN_FLIGHT)

    def read() -> None:
        try:
            for index, request in enumerate(requests):
                if index >= limit:
                    raise ResourceLimit(
                        f"a ScoreStream call carries at most {limit} requests; "
                        "open a new stream for more"
                    )
                inbox.put((index, request))
            inbox.put(_END)
        except BaseException as err:  # handed to the handler, which ends the call with it
            inbox.put(err)

    threading.Thread(target=read, name="stream-reader", daemon=True).start()
    return inbox


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

    def attach(self, scorer: Scorer, monitoring: Monitoring | None = None) -> None:
        """Start answering from ``scorer`` and ``monitoring`` (until then: UNAVAILABLE)."""
        self.monitoring = monitoring
        self.scorer = scorer

    def _monitoring(self) -> Monitoring:
        if self.monitoring is None:
            raise NotReady("the service is loading its model and features; retry shortly")
        return self.monitoring

    def _ready(self) -> Scorer:
        if self.scorer is None:
            raise NotReady("the service is loading its model and features; retry shortly")
        return self.scorer

    # Score and ScoreStream answer serialised ScoreResponse bytes (see register()).

    def Score(  # noqa: N802 - gRPC method name
        self, request: credit_risk_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> bytes:
        query = decode_score_request(request)
        client = current_call().client
        assert client is not None
        answer = self._ready().decide(query, client, _SCORE)
        return self.encoder.encode(answer, explain=query.explain)

    def ScoreStream(  # noqa: N802
        self,
        requests: Iterator[credit_risk_pb2.ScoreRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[bytes]:
        """Decides each request as it arrives and sends each answer once its log entry is
        durable, in request order. The decisions in flight share the log's group commits
        (waiting for each entry in turn would cost one fsync per item); a reader thread
        takes the requests, so a client that waits for each answer before sending the next
        is answered as soon as its entry is durable."""
        call = current_call()
        client = call.client
        assert client is not None
        scorer = self._ready()
        items = self.metrics.stream_items
        ok = items.labels("ScoreStream", "OK")
        inbox = _read_behind(requests, self.max_stream_items)
        in_flight: deque[tuple[ScoredDecision | None, bytes]] = deque()
        while True:
            while in_flight and _sendable(in_flight[0][0]):
                yield in_flight.popleft()[1]
            try:
                item = inbox.get(timeout=_POLL_SECONDS) if in_flight else inbox.get()
            except queue.Empty:
                yield _when_durable(in_flight.popleft())  # nothing new: wait for the oldest
                continue
            if item is _END or isinstance(item, BaseException):
                break
            assert isinstance(item, tuple)
            index: int = item[0]
            request: credit_risk_pb2.ScoreRequest = item[1]
            try:
                self.quotas.take(client)
                query = decode_score_request(request)
                answer = scorer.decide(query, client, _SCORE, "ScoreStream", wait_for_log=False)
                encoded = self.encoder.encode(answer, explain=query.explain, stream_index=index)
                in_flight.append((answer, encoded))
                ok.inc()
            except Exception as err:
                failure = failure_of(err)
                if failure.code is grpc.StatusCode.INTERNAL:
                    raise  # a fault of ours ends the stream with INTERNAL, logged
                items.labels("ScoreStream", failure.code.name).inc()
                in_flight.append(
                    (
                        None,
                        credit_risk_pb2.ScoreResponse(
                            request_id=request.request_id,
                            stream_index=index,
                            error=item_error(failure, request.request_id or call.request_id),
                        ).SerializeToString(),
                    )
                )
            if len(in_flight) > _MAX_IN_FLIGHT:
                yield _when_durable(in_flight.popleft())
        while in_flight:  # what was decided is answered, also when the reading failed
            yield _when_durable(in_flight.popleft())
        if isinstance(item, BaseException):
            raise item

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
