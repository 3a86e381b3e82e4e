"""The Records servicer: reporters stream batches; each is ingested before the next is
read, so every batch the summary lists is durable in the store; the subjects it touched are
queued for refresh at once. A contract error (no table, an unknown column, an oversized
batch) ends the call with its status; the batches before it stay stored, and sending them
again adds nothing (their rows count as duplicates)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc

from creditrisk.v1 import records_pb2, records_pb2_grpc
from service.clients import REGISTRY_TABLES
from service.intake import RecordIntake
from service.interceptors import current_call
from service.monitoring_codec import decode_batch, encode_batch_result
from service.problems import InvalidRequest, NotReady, PermissionDenied, ResourceLimit
from service.quotas import QuotaBook

__all__ = ["RecordsServicer"]


class RecordsServicer(records_pb2_grpc.RecordsServicer):
    def __init__(self, quotas: QuotaBook, *, max_stream_items: int) -> None:
        self.quotas = quotas
        self.max_stream_items = max_stream_items
        self.intake: RecordIntake | None = None
        self.refresh: Callable[[list[str]], int] | None = None

    def attach(self, intake: RecordIntake, refresh: Callable[[list[str]], int]) -> None:
        """Start accepting records into ``intake``; ``refresh`` queues touched subjects."""
        self.refresh = refresh
        self.intake = intake

    def SubmitRecords(  # noqa: N802 - gRPC method name
        self, requests: Iterator[records_pb2.RecordBatch], context: grpc.ServicerContext
    ) -> records_pb2.SubmitSummary:
        if self.intake is None or self.refresh is None:
            raise NotReady("the service is loading its records store; retry shortly")
        client = current_call().client
        assert client is not None
        summary = records_pb2.SubmitSummary()
        touched: set[str] = set()
        for index, batch in enumerate(requests):
            if index >= self.max_stream_items:
                raise ResourceLimit(
                    f"a SubmitRecords call carries at most {self.max_stream_items} batches; "
                    "open a new stream for more"
                )
            self.quotas.take(client)
            at = f"batches[{index}]"
            try:
                reported = decode_batch(batch)
            except InvalidRequest as err:
                raise err.within(at) from None
            if reported.table in REGISTRY_TABLES and reported.table not in client.registries:
                raise PermissionDenied(
                    f"{at}.table: {reported.table} is a registry table (keyed without source); "
                    f"client {client.name} is not granted it"
                )
            _own_source(reported.rows, client.source, at)
            ingested = self.intake.submit(reported, reporter=client.name, at=at)
            result = encode_batch_result(batch, ingested)
            summary.batches.append(result)
            summary.read += result.read
            summary.accepted += result.accepted
            summary.duplicate += result.duplicate
            summary.rejected += result.rejected
            fresh = set(ingested.touched_subjects) - touched
            touched |= fresh
            self.refresh(sorted(fresh))
        summary.subjects_refreshed = len(touched)
        return summary


def _own_source(rows: list[dict[str, str]], source: str, at: str) -> None:
    """A reporter reports under its own code: an absent ``source`` is filled with it, and
    another code is refused (one department cannot report in another's name)."""
    for index, row in enumerate(rows):
        given = row.get("source")
        if not given:
            row["source"] = source
        elif given != source:
            raise PermissionDenied(
                f"{at}.rows[{index}]: source must be your reporter code ({source}) or absent"
            )
