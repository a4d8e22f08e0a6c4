"""PacketQueue: what python-engineio and the broadcast manager rely on of asyncio.Queue."""

from __future__ import annotations

import asyncio

import pytest

from app.transport.queues import PacketQueue


async def test_packets_come_out_in_order_and_a_reader_waits_for_the_next() -> None:
    queue = PacketQueue()
    queue.put_nowait("a")
    await queue.put("b")
    assert queue.qsize() == 2 and not queue.empty()
    assert [await queue.get(), queue.get_nowait()] == ["a", "b"]
    assert queue.empty() and queue.qsize() == 0
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    reader = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not reader.done() and queue.reader_waiting  # the broadcast manager's "writer idle"
    queue.put_nowait("c")
    assert await reader == "c"
    assert not queue.reader_waiting


async def test_a_reader_cut_short_takes_nothing_and_the_next_one_gets_it() -> None:
    queue = PacketQueue()
    timed_out = asyncio.ensure_future(asyncio.wait_for(queue.get(), 0.01))
    with pytest.raises(TimeoutError):
        await timed_out
    assert not queue.reader_waiting
    # Woken for a packet, then cancelled before it ran: the packet stays for the next reader.
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("x")
    first.cancel()
    assert await second == "x"
    assert first.cancelled()


async def test_join_waits_until_every_packet_is_done() -> None:
    queue = PacketQueue()
    await asyncio.wait_for(queue.join(), 1)  # nothing queued: at once
    queue.put_nowait(1)
    queue.put_nowait(2)
    joined = asyncio.ensure_future(queue.join())
    for _ in range(2):
        await asyncio.sleep(0)
        assert not joined.done()
        queue.get_nowait()
        queue.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError):
        queue.task_done()


def test_a_writer_on_demand_is_called_for_every_packet_and_idle_only_when_done() -> None:
    """A WebSocket that opened as one writes its queue with a task started on demand
    (`on_put`), not a reader that waits: it counts as an idle writer (direct writes may go
    ahead of the queue) only while nothing is queued and it is not writing."""
    queue = PacketQueue()
    calls: list[int] = []
    queue.on_put = lambda: calls.append(queue.qsize())
    assert queue.reader_waiting  # nothing queued, nobody writing
    queue.put_nowait("a")
    queue.put_nowait("b")
    assert calls == [1, 2] and not queue.reader_waiting
    queue.busy = True  # the writer takes both, and is writing the last
    assert [queue.get_nowait(), queue.get_nowait()] == ["a", "b"]
    assert not queue.reader_waiting
    queue.busy = False
    assert queue.reader_waiting
