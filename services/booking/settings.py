from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from optisync_common.settings import ServiceSettings
from services.booking.domain.waitlist import DEFAULT_MAX_WAITING, DEFAULT_MAX_WAITING_PER_CUSTOMER


class BookingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKING_", extra="ignore", frozen=True)

    service_name: str = "booking"
    http_port: int = 8002
    # Pages: base URL customers reach the pages under (manage links, .ics URLs); empty: the
    # request's own. Manage links are signed with `signing_secret` (refused at its development
    # default outside dev/test) and expire after this many days.
    public_url: str = ""
    manage_link_ttl_days: int = 60
    # faust worker's web server (/healthz, /readyz, /metrics of the stream worker)
    worker_port: int = 8102
    # projector process (MongoDB booking documents, Redis views): /healthz, /readyz, /metrics
    projector_port: int = 8202
    # how long POST handlers wait for the processor's decision before answering 202
    decision_timeout_s: float = 2.0
    # a command answered 202 whose decision no process of this API waits for any more (the one
    # that answered restarted, or its 15-minute late window passed): this long past its deadline,
    # a read of its status URL looks for the decision in booking.events.v1 itself, at most once
    # every `late_decision_every_s` per command
    late_decision_after_s: float = Field(default=5.0, ge=0)
    late_decision_every_s: float = Field(default=2.0, gt=0)
    # how long a change to a just-decided booking (or offer) waits for its projection before
    # answering 404: the projector may lag behind the decision under load
    projection_wait_s: float = Field(default=2.0, ge=0)
    # how long the consumers on a booking's path (processor commands, API replies, live
    # consoles) pause after a non-empty batch, gathering what arrives meanwhile: a few ms of
    # latency instead of a fetch per record under load (`optisync_common.kafka.linger`). Off
    # by default now that commands go out without producer linger: at 500 bookings/s, 3 ms
    # gave p50 14 ms and p99 50-70 ms against 9 and 42-47 with 1 ms (3 same-window pairs,
    # 0.2-0.3 ms more CPU per booking), and 0 gave p99 43-59 ms against 69-79 with 1 ms for
    # the same CPU (3 more pairs, in a slower spell of the host). The
    # projector, off the request's path, pauses `projector_fetch_linger_ms`: its bigger
    # batches (one insert_many each) left the request's path more of the two cores (20 -> 100:
    # projector + FerretDB CPU per booking at 500/s 0.73 -> 0.52 ms, p99 118 -> 89 ms)
    hot_fetch_linger_ms: float = Field(default=0.0, ge=0, le=500)
    projector_fetch_linger_ms: float = Field(default=100.0, ge=0, le=1000)
    # the projector's nice value while its batches are fresh (`optisync_common.priority`):
    # where it shares cores with the booking path, its wake-ups then wait for the requests'
    # instead of the other way round; it takes its full share back when it falls behind.
    # 0: never yield. Only where the process may raise its priority back (CAP_SYS_NICE).
    projector_yield_nice: int = Field(default=10, ge=0, le=19)
    # how long command outcomes (GET /v1/commands/{id}) stay readable in Redis
    idempotency_ttl_s: int = 86400
    # waitlist: a freed slot is offered to this many entries, held for them this long
    waitlist_offers: int = Field(default=3, ge=1, le=20)
    waitlist_hold_s: int = Field(default=600, ge=1)
    # entries that may wait at once at one store (its waitlist is one record of the
    # processor's state, under the broker's 1 MB), and of one customer there
    waitlist_max_waiting: int = Field(default=DEFAULT_MAX_WAITING, ge=1, le=2000)
    waitlist_max_waiting_per_customer: int = Field(
        default=DEFAULT_MAX_WAITING_PER_CUSTOMER, ge=1, le=100
    )
    # the processor forgets store-days and bookings this many days after their day, so its
    # state stops growing (`adapters/processor_retention.py`); MongoDB keeps the documents
    processor_retain_days: int = Field(default=30, ge=1)
    # how often an idle processor task checks for lapsed holds (the expiry's precision)
    processor_tick_s: float = Field(default=1.0, gt=0)
    # the processor's tasks commit in this many groups, each in its own transactions
    # (`optisync_common.txstream`): the most processor instances that share the work
    processor_task_groups: int = Field(default=1, ge=1, le=12)
    # the least time between the starts of a task group's transactions: at 500 bookings/s,
    # 8 ms made them 89-115 a second instead of 76-172 and saved 0.2-0.5 ms of CPU per booking
    # over the whole path (six alternated pairs, README "Benchmarks"); it caps a group at 125
    # transactions a second, of up to 500 commands each. 0: the next starts once commands wait.
    processor_txn_interval_ms: float = Field(default=8.0, ge=0, le=1000)
    # ...only while the group receives at least this many commands a second (0: always). With
    # 375 (3 per 8 ms) a command at 250/s commits alone, at once: p50 7.5 vs 17.6 ms when the
    # host had cores to spare, but when it was slow its p99 was 79-87 vs 56-59 ms (README).
    processor_txn_interval_min_rate: float = Field(default=0.0, ge=0)


@lru_cache
def get_settings() -> BookingSettings:
    return BookingSettings()
