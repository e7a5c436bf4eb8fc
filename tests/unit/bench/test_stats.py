import argparse
import asyncio

from bench.run import OPTOMETRISTS, SLOT_MINUTES, _closed_loop, days_needed
from bench.stats import percentiles, steady_rate


def test_a_server_that_keeps_up_reads_at_the_offered_rate_whatever_its_latency():
    sent = [k / 100 for k in range(1000)]  # 100/s for 10 s
    answered = [t + 0.2525 for t in sent]  # each answered ~250 ms later
    assert steady_rate(answered, start=0.0, seconds=10) == 100.0
    assert round(len(answered) / answered[-1], 1) == 97.6  # all / time to the last: short


def test_a_server_falling_behind_reads_below_the_offered_rate():
    sent = [k / 100 for k in range(1000)]
    answered = [t + t * 0.5 for t in sent]  # its queue grows: answers come at 2/3 the rate
    assert steady_rate(answered, start=0.0, seconds=10) == 66.7


def test_nearest_rank_percentiles():
    assert percentiles(range(1, 101), 0.5, 0.99) == [51.0, 100.0]


def test_the_seeded_days_cover_every_booking_the_steps_can_make():
    parser_defaults = {
        "seconds": 10, "rates": "100,250,500,1000", "processor_rates": "100,500,1000,2000",
        "stores": 40, "days": 28,
    }  # fmt: skip
    default = argparse.Namespace(**parser_defaults)
    assert days_needed(default, ["reads", "bookings", "processor"]) == 28
    long = argparse.Namespace(**{**parser_defaults, "seconds": 60})
    days = days_needed(long, ["bookings"])
    slots = len(SLOT_MINUTES) * len(OPTOMETRISTS) * 40 * days
    assert slots >= 20 * 300 + 60 * (1850 + 2500) > slots - len(SLOT_MINUTES) * 4 * 40


def test_a_closed_loop_against_a_dead_server_ends_when_the_seeded_slots_run_out():
    # Connection refused at once: without a bound the clients would outrun the supply and
    # crash the whole run with StopIteration (as a killed stack once did).
    slots = iter([("store", "opt", "2030-01-07T09:00:00+08:00")] * 40)
    step = asyncio.run(_closed_loop("http://127.0.0.1:9", 4, 30, slots, "dead"))
    assert step["statuses"] == {0: 40}
    assert step["requests"] == 40
