"""A deterministic booking history with known outcomes, as the envelopes the platform would
publish (BookingFact, AvailabilityViewed, FeedbackReceived, DeliveryAttempted).

`expected` is computed from the drawn outcomes, not from the aggregator's counter mapping, so
the replay test checks the aggregator against an independent account of what happened.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from schemas.envelope import Envelope, new_envelope
from schemas.events.base import Actor, Channel, EventPayload, RejectionReason
from schemas.events.facts import AvailabilityViewed, BookingFact, FactKind
from schemas.events.feedback import FeedbackReceived
from schemas.events.notify import DeliveryAttempted, DeliveryStatus, NotificationKind

REJECT_REASONS = (RejectionReason.SLOT_TAKEN, RejectionReason.NO_SHIFT,
                  RejectionReason.OUTSIDE_HOURS)  # fmt: skip
CHANNELS = (Channel.WECHAT, Channel.WEB, Channel.PHONE, Channel.FRONT_DESK)


@dataclass
class History:
    envelopes: list[Envelope[Any]] = field(default_factory=list)
    # expected[(store_id, iso date)][counter] and the chain totals
    expected: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)

    def count(self, store_id: str, date: dt.date, name: str, n: int = 1) -> None:
        self.expected.setdefault((store_id, date.isoformat()), Counter())[name] += n

    def totals(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for c in self.expected.values():
            out.update(c)
        return out


def _env(payload: EventPayload, store_id: str, region: str, at: dt.datetime) -> Envelope[Any]:
    return new_envelope(
        payload, region=region, store_id=store_id, correlation_id=uuid.uuid4().hex,
        occurred_at=at,
    )  # fmt: skip


def _fact(h: History, at: dt.datetime, base: dict[str, Any], kind: FactKind, **extra: Any) -> None:
    payload = BookingFact(fact=kind, **base, **extra)
    h.envelopes.append(_env(payload, payload.store_id, payload.region, at))


def generate(
    store_ids: list[str], regions: list[str], first_day: dt.date, days: int, bookings: int,
    seed: int = 7,
) -> History:  # fmt: skip
    """`bookings` bookings spread over the stores and days, every outcome drawn from `seed`."""
    rnd = random.Random(seed)
    h = History()
    for n in range(bookings):
        i = n % len(store_ids)
        store, region = store_ids[i], regions[i]
        # Store 0 cancels far more often: the anomaly the API must flag.
        cancel_p = 0.30 if i == 0 else 0.08
        day = first_day + dt.timedelta(days=rnd.randrange(days))
        at = dt.datetime.combine(day, dt.time(2, 0), dt.UTC) + dt.timedelta(minutes=n % 600)
        exam = rnd.choice(("standard", "contact_lens"))
        channel = rnd.choice(CHANNELS)

        fact = functools.partial(
            _fact, h, at, dict(store_id=store, region=region, exam_type=exam, channel=channel,
                               local_date=day),
        )  # fmt: skip

        if rnd.random() < 0.5:
            views = rnd.randint(1, 3)
            for _ in range(views):
                h.envelopes.append(_env(
                    AvailabilityViewed(store_id=store, local_date=day, channel=channel),
                    store, region, at,
                ))  # fmt: skip
            h.count(store, day, "views", views)
        fact(FactKind.REQUESTED, lead_minutes=rnd.randint(0, 20000))
        h.count(store, day, "requested")
        if rnd.random() < 0.15:
            reason = rnd.choice(REJECT_REASONS)
            fact(FactKind.REJECTED, reason=reason)
            h.count(store, day, "rejected")
            h.count(store, day, f"rejected__{reason.value}")
            continue
        fact(FactKind.CONFIRMED, lead_minutes=rnd.randint(0, 20000))
        h.count(store, day, "confirmed")
        status = rnd.choice((DeliveryStatus.SENT, DeliveryStatus.SENT, DeliveryStatus.SENT,
                             DeliveryStatus.DEAD_LETTERED))  # fmt: skip
        delivery = DeliveryAttempted(
            notification_id=f"n-{n}", kind=NotificationKind.CONFIRMATION, channel=channel,
            attempt=1, status=status, source_event_id=str(uuid.uuid4()),
        )  # fmt: skip
        h.envelopes.append(_env(delivery, store, region, at))  # 02:00 UTC: same day in UTC+8
        h.count(store, day, "delivery_attempts")
        h.count(store, day, f"delivery__{status.value}")
        if rnd.random() < 0.1:
            fact(FactKind.RESCHEDULED)
            h.count(store, day, "rescheduled")
        draw = rnd.random()
        if draw < cancel_p:
            by = rnd.choice((Actor.CUSTOMER, Actor.CUSTOMER, Actor.STORE))
            lead = rnd.choice((30, 600, 3000, 20000))
            late = lead < 120
            fact(FactKind.CANCELLED, cancelled_by=by, late=late, lead_minutes=lead)
            h.count(store, day, "cancelled")
            h.count(store, day, f"cancelled_by__{by.value}")
            if late:
                h.count(store, day, "cancelled_late")
            bucket = {30: "lt_2h", 600: "2h_24h", 3000: "1d_7d", 20000: "ge_7d"}[lead]
            h.count(store, day, f"cancelled_lead__{bucket}")
            if rnd.random() < 0.5:  # the freed slot goes to the waitlist
                fact(FactKind.WAITLIST_OFFERED)
                h.count(store, day, "waitlist_offered")
                if rnd.random() < 0.6:
                    fact(FactKind.WAITLIST_FILLED)
                    h.count(store, day, "waitlist_filled")
        elif draw < cancel_p + 0.1:
            fact(FactKind.NO_SHOW)
            h.count(store, day, "no_show")
        elif draw < cancel_p + 0.13:
            fact(FactKind.DISPLACED)
            h.count(store, day, "displaced")
        else:
            fact(FactKind.CHECKED_IN)
            h.count(store, day, "checked_in")
            if rnd.random() < 0.95:
                fact(FactKind.COMPLETED)
                h.count(store, day, "completed")
                if rnd.random() < 0.3:
                    rating = rnd.randint(1, 5)
                    h.envelopes.append(_env(
                        FeedbackReceived(booking_id=f"b-{n}", store_id=store, rating=rating,
                                         comment_present=False, local_date=day),
                        store, region, at,
                    ))  # fmt: skip
                    h.count(store, day, "feedback")
                    h.count(store, day, "rating_sum", rating)
                    h.count(store, day, f"rating__{rating}")
        if rnd.random() < 0.05:
            fact(FactKind.WAITLIST_JOINED)
            h.count(store, day, "waitlist_joined")
    return h
