"""Post-loan monitoring for a platform: its watchlist and its alerts (no gRPC here).

The servicers decode Watch / Unwatch / WatchAlerts requests into calls on
:class:`Monitoring`, which checks each watched subject like a scoring query (a valid
identifier, known as of the served date, the subject's authorization for a person) and
answers from :class:`service.watchlists.Watchlists` and :class:`service.alerts.AlertLog`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from audit.entries import subject_groups
from service.alerts import Alert, AlertKind, AlertLog
from service.problems import ConsentRequired, InvalidRequest, ResourceLimit, SubjectNotFound
from service.scoring import Scorer, SubjectQuery, check_reference
from service.watchlists import Watch, Watchlists

__all__ = ["Monitoring", "WatchItem"]


@dataclass(frozen=True)
class WatchItem:
    """One subject of a Watch or Unwatch request, as the platform sent it."""

    subject: SubjectQuery
    reference: str = ""
    authorization_id: str = ""


class Monitoring:
    def __init__(
        self,
        scorer: Scorer,
        watchlists: Watchlists,
        alerts: AlertLog,
        *,
        max_subjects: int,
        max_streams: int,
        page: int,
        log_gender: bool = False,
    ) -> None:
        self.scorer = scorer
        self.watchlists = watchlists
        self.alerts = alerts
        self.max_subjects = max_subjects
        self.page = page
        self.log_gender = log_gender
        self._streams = threading.BoundedSemaphore(max_streams)
        self.max_streams = max_streams

    def _check_size(self, items: Sequence[WatchItem]) -> None:
        if len(items) > self.max_subjects:
            raise ResourceLimit(
                f"a watchlist request carries at most {self.max_subjects} subjects; split it"
            )

    def _key(self, item: WatchItem, at: str, today: datetime) -> tuple[str, str, str]:
        try:
            return self.scorer.subject_key(item.subject, today.date())
        except InvalidRequest as err:
            raise err.within(at) from None

    def watch(self, client: str, items: Sequence[WatchItem]) -> tuple[int, int]:
        """Add ``items`` to ``client``'s watchlist, all or nothing; (added, watched)."""
        self._check_size(items)
        now = datetime.now(UTC)
        watches = []
        for index, item in enumerate(items):
            at = f"subjects[{index}]"
            subject_type, key, identifier = self._key(item, at, now)
            check_reference(item.reference, f"{at}.reference")
            check_reference(item.authorization_id, f"{at}.authorization_id")
            if subject_type == "person" and not item.authorization_id:
                raise ConsentRequired(
                    f"{at}.authorization_id",
                    f"{at}: monitoring a natural person requires the subject's authorization: "
                    "set authorization_id to the reference of the signed consent",
                )
            if self.scorer.book.lookup(key) is None:
                raise SubjectNotFound(f"{at}: no records on file for this subject")
            groups = subject_groups(
                subject_type, identifier, now.date(), with_gender=self.log_gender
            )
            watches.append(
                Watch(client, subject_type, key, item.reference, item.authorization_id, groups)
            )
        return self.watchlists.add(client, watches)

    def unwatch(self, client: str, items: Sequence[WatchItem]) -> tuple[int, int]:
        """Remove ``items`` from ``client``'s watchlist; (removed, watched)."""
        self._check_size(items)
        now = datetime.now(UTC)
        keys = [self._key(item, f"subjects[{i}]", now)[1] for i, item in enumerate(items)]
        return self.watchlists.remove(client, keys)

    def alerts_for(
        self,
        client: str,
        after_id: int | None,
        kinds: Collection[AlertKind],
        active: Callable[[], bool],
        *,
        poll_seconds: float = 0.5,
    ) -> Iterator[Alert]:
        """``client``'s alerts after ``after_id`` (None: from now on), then each new one as
        it is stored, while ``active()`` (checked at least every ``poll_seconds``).
        At most ``max_streams`` run at once."""
        if not self._streams.acquire(blocking=False):
            raise ResourceLimit(
                f"at most {self.max_streams} WatchAlerts streams are open at once; retry later"
            )
        try:
            newest = self.alerts.last_id(client)
            if after_id is not None and not 0 <= after_id <= newest:
                raise InvalidRequest(
                    "after_alert_id",
                    "out_of_range",
                    f"after_alert_id must be between 0 and your newest alert id ({newest})",
                )
            last = newest if after_id is None else after_id
            while active():
                version = self.alerts.version
                found = self.alerts.after(client, last, kinds, self.page)
                if found:
                    last = found[-1].alert_id
                    yield from found
                else:
                    self.alerts.wait(version, poll_seconds)
        finally:
            self._streams.release()
