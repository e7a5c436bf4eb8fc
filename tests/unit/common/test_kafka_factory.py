from optisync_common.kafka import make_producer, new_traceparent, trace_id_of
from optisync_common.settings import ServiceSettings


async def test_producers_are_idempotent_with_acks_all():
    producer = make_producer(ServiceSettings(service_name="probe"))
    try:
        # aiokafka keeps acks on the sender (all == -1) and idempotence as a txn manager.
        assert producer._sender._acks == -1
        assert producer._txn_manager is not None
    finally:
        await producer.stop()


def test_traceparent_round_trip():
    header = new_traceparent()
    version, trace_id, span_id, flags = header.split("-")
    assert (version, flags) == ("00", "01")
    assert len(trace_id) == 32 and len(span_id) == 16
    assert trace_id_of(header) == trace_id
    assert trace_id_of(None) is None
    assert trace_id_of("garbage") is None
