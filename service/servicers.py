"""The CreditRisk servicer: decode, call the domain, encode. Problems are raised, not
handled: :class:`service.interceptors.ErrorInterceptor` gives them their status, except
inside ScoreStream, where each bad item is answered with its own error and the stream goes
on."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from google.protobuf import timestamp_pb2

from creditrisk.v1 import credit_risk_pb2, credit_risk_pb2_grpc
from models.model import RiskModel
from models.registry import MODEL_FILE, ModelNotFoundError, ModelRegistry
from service.codec import (
    decode_score_request,
    decode_warnings_request,
    encode_score_response,
    encode_warnings_response,
)
from service.interceptors import CallMetrics, current_call
from service.problems import InvalidRequest, NotFound, NotReady, ResourceLimit
from service.quotas import QuotaBook
from service.scoring import Scorer
from service.status import failure_of, item_error

__all__ = ["CreditRiskServicer"]

_SCORE = "Score"
_WARNINGS = "GetWarnings"
_GRADES = {"A": 1, "B": 2, "C": 3, "D": 4, "E": 5}
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
        self.quotas = quotas
        self.metrics = metrics
        self.registry = registry
        self.max_stream_items = max_stream_items

    def attach(self, scorer: Scorer) -> None:
        """Start answering from ``scorer`` (until then: UNAVAILABLE)."""
        self.scorer = scorer

    def _ready(self) -> Scorer:
        if self.scorer is None:
            raise NotReady("the service is loading its model and features; retry shortly")
        return self.scorer

    def Score(  # noqa: N802 - gRPC method name
        self, request: credit_risk_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> credit_risk_pb2.ScoreResponse:
        query = decode_score_request(request)
        client = current_call().client
        assert client is not None
        answer = self._ready().decide(query, client, _SCORE)
        return encode_score_response(answer, explain=query.explain)

    def ScoreStream(  # noqa: N802
        self,
        requests: Iterator[credit_risk_pb2.ScoreRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[credit_risk_pb2.ScoreResponse]:
        call = current_call()
        client = call.client
        assert client is not None
        scorer = self._ready()
        items = self.metrics.stream_items
        for index, request in enumerate(requests):
            if index >= self.max_stream_items:
                raise ResourceLimit(
                    f"a ScoreStream call carries at most {self.max_stream_items} requests; "
                    "open a new stream for more"
                )
            try:
                self.quotas.take(client)
                query = decode_score_request(request)
                answer = scorer.decide(query, client, _SCORE)
                response = encode_score_response(answer, explain=query.explain)
                items.labels("ScoreStream", "OK").inc()
            except Exception as err:
                failure = failure_of(err)
                if failure.code is grpc.StatusCode.INTERNAL:
                    raise  # a fault of ours ends the stream with INTERNAL, logged
                items.labels("ScoreStream", failure.code.name).inc()
                response = credit_risk_pb2.ScoreResponse(
                    request_id=request.request_id,
                    error=item_error(failure, request.request_id or call.request_id),
                )
            response.stream_index = index
            yield response

    def GetWarnings(  # noqa: N802
        self, request: credit_risk_pb2.WarningsRequest, context: grpc.ServicerContext
    ) -> credit_risk_pb2.WarningsResponse:
        query = decode_warnings_request(request)
        client = current_call().client
        assert client is not None
        answer = self._ready().decide(query, client, _WARNINGS)
        return encode_warnings_response(answer, query.min_severity)

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
            grade=_GRADES[letter], pd_from=bounds[position], pd_to=bounds[position + 1]
        )
    return info
