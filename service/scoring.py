"""Answering a scoring query: the domain side of Score, ScoreStream and GetWarnings.

No gRPC here: the servicers decode a request into a :class:`ScoreQuery`, call
:class:`Scorer`, and encode what comes back. The scorer checks the request (identifier,
purpose, consent), finds the subject's precomputed decision, stamps it with a decision id
and time, remembers it for idempotent retries and records the query as a credit inquiry.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Protocol

from audit.chain import CanonicalBody
from audit.entries import decision_entry_bytes, subject_entry_parts, subject_groups
from audit.ids import decision_id
from features.warnings import Severity
from models.decisions import (
    SEVERITY_ORDER,
    DecisionBook,
    SubjectDecision,
    SubjectMemo,
    WarningFlag,
)
from records.identifiers import InvalidIdentifier, validate_resident_id, validate_uscc
from records.pseudonym import Pseudonymiser
from records.tables import INQUIRY_PURPOSES
from service.clients import Client
from service.idempotency import IdempotencyCache
from service.inquiries import InquiryRecorder
from service.problems import ConsentRequired, InvalidRequest, NotReady, SubjectNotFound

__all__ = [
    "MAX_REFERENCE_LENGTH",
    "DecisionRecorder",
    "ScoreQuery",
    "ScoredDecision",
    "Scorer",
    "SubjectQuery",
    "check_reference",
    "subject_identity",
]

MAX_REFERENCE_LENGTH = 128  # request_id and authorization_id


class PendingRecord(Protocol):
    def done(self) -> bool: ...

    def result(self) -> object: ...


class DecisionRecorder(Protocol):
    """Where decisions are logged (``audit.log.DecisionLog``): ``submit`` queues an entry,
    its ``result()`` returns once the entry is durable; a commit listener is called after
    each group commit."""

    def submit(self, entry: CanonicalBody) -> PendingRecord: ...

    def add_commit_listener(self, listener: Callable[[], None]) -> None: ...


@dataclass(frozen=True)
class SubjectQuery:
    """The identifier a caller sent: at most one of the two is set by a valid request."""

    uscc: str | None = None
    resident_id: str | None = None


@dataclass(frozen=True)
class ScoreQuery:
    subject: SubjectQuery
    purpose: str | None  # one of records.tables.INQUIRY_PURPOSES, None = not given
    authorization_id: str = ""
    request_id: str = ""
    explain: bool = False
    min_severity: Severity | None = None  # GetWarnings only

    def fingerprint(self, method: str) -> tuple[object, ...]:
        """What must be equal for a retried request_id to be the same request."""
        return (method, self.subject, self.purpose, self.authorization_id)


@dataclass(frozen=True)
class ScoredDecision:
    """A decision as given to one caller."""

    decision_id: str
    decided_at: datetime
    subject: SubjectDecision
    client: str
    purpose: str
    authorization_id: str
    request_id: str
    warning_rules_version: str
    replayed: bool = False  # the stored answer to an earlier request with this request_id
    logged: PendingRecord | None = None  # its decision-log entry (durable once done)

    def durable(self) -> ScoredDecision:
        """Wait until the decision is in the log (a write failure raises); return it."""
        if self.logged is not None:
            self.logged.result()
        return self

    def warnings(self, min_severity: Severity | None = None) -> tuple[WarningFlag, ...]:
        if min_severity is None:
            return self.subject.warnings
        floor = SEVERITY_ORDER[min_severity]
        return tuple(f for f in self.subject.warnings if SEVERITY_ORDER[f.severity] >= floor)


def check_reference(value: str, field: str) -> None:
    if len(value) > MAX_REFERENCE_LENGTH:
        raise InvalidRequest(
            field, "too_long", f"{field} is longer than {MAX_REFERENCE_LENGTH} characters"
        )
    if not value.isprintable():  # control characters (C0, C1), separators other than space
        raise InvalidRequest(field, "control_character", f"{field} contains a control character")


def subject_identity(
    subject: SubjectQuery, pseudonymiser: Pseudonymiser, today: date
) -> tuple[str, str, str]:
    """(subject_type, subject_key, identifier) of a valid identifier, the key of a person
    being its pseudonym; :class:`InvalidRequest` naming the field and the rule otherwise."""
    if (subject.uscc is None) == (subject.resident_id is None):
        raise InvalidRequest(
            "subject", "required", "set exactly one of subject.uscc or subject.resident_id"
        )
    try:
        if subject.uscc is not None:
            validate_uscc(subject.uscc)
            return "entity", subject.uscc, subject.uscc
        assert subject.resident_id is not None
        validate_resident_id(subject.resident_id, today=today)
    except InvalidIdentifier as err:
        field = "subject.uscc" if subject.uscc is not None else "subject.resident_id"
        raise InvalidRequest(field, err.rule, f"{field}: {err}") from None
    return "person", pseudonymiser.person_key(subject.resident_id), subject.resident_id


class Scorer:
    def __init__(
        self,
        book: DecisionBook,
        pseudonymiser: Pseudonymiser,
        *,
        inquiries: InquiryRecorder | None,
        idempotency: IdempotencyCache[ScoredDecision],
        non_inquiry_purposes: Collection[str] = ("post_loan_management", "self_inquiry"),
        decision_log: DecisionRecorder | None = None,
        log_gender: bool = False,
    ) -> None:
        unknown = set(non_inquiry_purposes) - set(INQUIRY_PURPOSES)
        if unknown:
            raise ValueError(f"non-inquiry purposes not among {INQUIRY_PURPOSES}: {unknown}")
        self.book = book
        self.pseudonymiser = pseudonymiser
        self.inquiries = inquiries
        self.idempotency = idempotency
        self.non_inquiry_purposes = frozenset(non_inquiry_purposes)
        self.decision_log = decision_log
        self.log_gender = log_gender  # setting audit.fairness_by_gender
        self._entry_parts = SubjectMemo(subject_entry_parts)  # asked again and again

    def prepare(self, subjects: Iterable[SubjectDecision]) -> None:
        """Make ahead of the requests the subject's part of these subjects' log entries
        (without reasons: what most calls ask)."""
        self._entry_parts.prepare(subjects, False)

    # -- checks -------------------------------------------------------------------------

    def subject_key(self, subject: SubjectQuery, today: date) -> tuple[str, str, str]:
        """(subject_type, subject_key, identifier) of a valid identifier; the key of a
        person is its pseudonym."""
        uscc = subject.uscc
        if uscc is not None and subject.resident_id is None:
            # An entity the book holds is keyed by its code as ingestion validated it:
            # checking the code again would tell nothing (the type check keeps a person's
            # pseudonym sent as a code from being taken for an entity).
            known = self.book.lookup(uscc)
            if known is not None and known.subject_type == "entity":
                return "entity", uscc, uscc
        return subject_identity(subject, self.pseudonymiser, today)

    def _check(self, query: ScoreQuery, subject_type: str) -> str:
        if query.purpose is None:
            raise InvalidRequest("purpose", "required", "purpose is required")
        check_reference(query.request_id, "request_id")
        check_reference(query.authorization_id, "authorization_id")
        if subject_type == "person" and not query.authorization_id:
            raise ConsentRequired(
                "authorization_id",
                "scoring a natural person requires the subject's authorization: set "
                "authorization_id to the reference of the signed consent",
            )
        return query.purpose

    # -- answers ------------------------------------------------------------------------

    def decide(
        self,
        query: ScoreQuery,
        client: Client,
        method: str,
        channel: str | None = None,
        *,
        wait_for_log: bool = True,
    ) -> ScoredDecision:
        """The decision about ``query``'s subject for ``client``: ``method`` is what the
        answer is (Score, GetWarnings: a retried request id must name the same),
        ``channel`` how it was asked (default: the method; ScoreStream), as logged. It is
        returned once its log entry is durable, or at once with ``wait_for_log=False``:
        then the caller must call ``durable()`` before sending it (a stream does, so that
        its decisions share group commits)."""
        now = datetime.now(UTC)
        subject_type, key, identifier = self.subject_key(query.subject, now.date())
        purpose = self._check(query, subject_type)
        fingerprint = query.fingerprint(method)
        stored = self.idempotency.get(client.name, query.request_id, fingerprint)
        if stored is not None:
            return self._replayed(stored, query.explain, wait_for_log)
        if self.book.as_of is None:
            raise NotReady("the service is loading its model and features; retry shortly")
        found = self.book.lookup(key)
        if found is None:
            raise SubjectNotFound(
                f"no records on file for this {'entity' if subject_type == 'entity' else 'person'}"
                f" as of {self.book.as_of.isoformat()}"
            )
        subject = self._explained(found, query.explain)
        identifier_of_decision = decision_id()
        pending = None
        if self.decision_log is not None:
            # Queued before it can be answered or replayed, and answered only once durable:
            # a caller never gets an answer the log lacks (a failed append fails the call).
            pending = self.decision_log.submit(
                decision_entry_bytes(
                    decision_id=identifier_of_decision,
                    decided_at=now,
                    kind="online",
                    method=channel or method,
                    client=client.name,
                    purpose=purpose,
                    authorization_id=query.authorization_id,
                    request_id=query.request_id,
                    subject=subject,
                    model=self.book.model,
                    warning_rules_version=self.book.warning_rules_version,
                    reasons_given=query.explain,
                    groups=subject_groups(
                        subject_type, identifier, now.date(), with_gender=self.log_gender
                    ),
                    subject_parts=self._entry_parts,
                )
            )
        mine = ScoredDecision(
            decision_id=identifier_of_decision,
            decided_at=now,
            subject=subject,
            client=client.name,
            purpose=purpose,
            authorization_id=query.authorization_id,
            request_id=query.request_id,
            warning_rules_version=self.book.warning_rules_version,
            logged=pending,
        )
        answer = self.idempotency.put(client.name, query.request_id, fingerprint, mine)
        if answer is not mine:  # a concurrent retry of the same request stored its answer
            return self._replayed(answer, query.explain, wait_for_log)
        if self.inquiries is not None and purpose not in self.non_inquiry_purposes:
            self.inquiries.record(
                inquiry_id=answer.decision_id,
                subject_type=subject_type,
                subject_id=identifier,
                purpose=purpose,
                inquired_at=now,
                source=client.source,
            )
        return answer.durable() if wait_for_log else answer

    def _replayed(
        self, stored: ScoredDecision, explain: bool, wait_for_log: bool
    ) -> ScoredDecision:
        """The stored answer to an earlier request with the same request_id (its log
        entry may still be on its way: the caller waits as for a new decision)."""
        replay = replace(stored, replayed=True, subject=self._explained(stored.subject, explain))
        return replay.durable() if wait_for_log else replay

    def _explained(self, subject: SubjectDecision, explain: bool) -> SubjectDecision:
        """``subject`` with its reasons when they are asked for."""
        if not explain or subject.explained:
            return subject
        return self.book.explained(subject)
