"""xentrace binary format: t_rec encoding against hand-computed bytes, CPU-change chunks,
the writer (also with concurrent appends) and the reader."""

from __future__ import annotations

import io
import struct
import threading

import pytest

from pyxen.hypervisor.sched import trace as T


def test_event_ids():
    assert T.TRC_SCHED_RUNSTATE_CHANGE == 0x0002_1001
    assert T.TRC_SCHED_CONTINUE_RUNNING == 0x0002_1002
    assert T.TRC_SCHED_WAKE == 0x0002_8004
    assert T.TRC_SCHED_SWITCH == 0x0002_800A
    assert T.TRC_SCHED_SWITCH_INFPREV == 0x0002_800E
    assert T.TRC_SCHED_SWITCH_INFNEXT == 0x0002_800F
    assert T.TRC_SCHED_SWITCH_INFCONT == 0x0002_8011
    assert T.TRC_TRACE_CPU_CHANGE == 0x0001_F003
    assert T.TRC_CSCHED2_CREDIT_BURN == 0x0002_2203
    assert T.sched_class_evt(T.TRC_SCHED_SNULL, 5) == 0x0002_2A05
    # runnable (1) -> running (0): old state in bits 9:8, new in 5:4
    assert T.runstate_event(T.RUNSTATE_RUNNABLE, T.RUNSTATE_RUNNING) == 0x0002_1101
    assert T.runstate_event(T.RUNSTATE_RUNNING, T.RUNSTATE_BLOCKED) == 0x0002_1021
    assert T.runstate_event(T.RUNSTATE_OFFLINE, T.RUNSTATE_RUNNABLE) == 0x0002_1311
    assert T.runstate_states(0x0002_1021) == (0, 2)
    assert T.is_runstate_change(0x0002_1311)
    assert not T.is_runstate_change(T.TRC_SCHED_CONTINUE_RUNNING)
    assert T.unit_word(3, 1) == 0x0003_0001
    assert T.split_unit_word(0x0003_0001) == (3, 1)


def test_t_rec_with_tsc_hand_computed():
    # WAKE {dom 1, vcpu 0} at TSC 0x1_0000_0002: header 0x00028004 | 2 << 28 | 1 << 31
    raw = T.encode_record(T.TRC_SCHED_WAKE, (1, 0), tsc=0x1_0000_0002)
    assert raw == bytes.fromhex("048002a0" "02000000" "01000000" "01000000" "00000000")
    assert len(raw) == 4 + 8 + 4 * 2


def test_t_rec_runstate_change_hand_computed():
    # d2v1 runnable -> running, TSC 2400 (1 µs): one data word {u16 vcpu, u16 dom}
    raw = T.encode_record(T.runstate_event(1, 0), (T.unit_word(2, 1),), tsc=T.ns_to_tsc(1000))
    assert raw == bytes.fromhex("01110290" "60090000" "00000000" "01000200")


def test_t_rec_without_tsc_and_cpu_change():
    assert T.encode_record(0x0002_8001, (7,)) == bytes.fromhex("01800210" "07000000")
    assert T.encode_record(T.TRC_SCHED_CONTINUE_RUNNING, ()) == bytes.fromhex("02100200")
    # CPU change: header 0x0001f003 | 2 << 28, no TSC, {cpu, window_size}
    assert T.cpu_change_record(3, 40) == bytes.fromhex("03f00120" "03000000" "28000000")


def test_words_taken_modulo_2_32_and_limits():
    raw = T.encode_record(T.TRC_CSCHED2_CREDIT_BURN, (-1, -(1 << 31), 1 << 32), tsc=0)
    assert struct.unpack("<6I", raw)[3:] == (0xFFFF_FFFF, 0x8000_0000, 0)
    with pytest.raises(T.TraceFormatError):
        T.encode_record(1, range(8))


def test_tsc_conversion():
    assert T.TSC_KHZ == 2_400_000
    assert T.ns_to_tsc(1_000_000_000) == 2_400_000_000
    assert T.ns_to_tsc(1) == 2 and T.ns_to_tsc(5) == 12
    for ns in (*range(0, 1000), 10**9 + 7, 60 * 10**9 + 123_456_789):
        assert T.tsc_to_ns(T.ns_to_tsc(ns)) == ns
    # strictly increasing: distinct ns never share a TSC
    assert all(T.ns_to_tsc(n + 1) > T.ns_to_tsc(n) for n in range(1000))


def test_decode_round_trip():
    recs = [(T.TRC_SCHED_SWITCH, (1, 0, 2, 1), 12345), (T.TRC_SCHED_DOM_ADD, (4,), None),
            (T.TRC_SCHED_CONTINUE_RUNNING, (), 1 << 40), (0x0002_2215, tuple(range(7)), 9)]
    data = b"".join(T.encode_record(e, w, tsc) for e, w, tsc in recs)
    out = list(T.decode_records(data, cpu=5))
    assert [(r.event, r.words, r.tsc) for r in out] == recs
    assert all(r.cpu == 5 for r in out)
    with pytest.raises(T.TraceFormatError):
        list(T.decode_records(data[:-2]))


def test_writer_chunks_and_reader():
    buf = io.BytesIO()
    w = T.TraceWriter(buf, 2, chunk_bytes=64, threadsafe=False)
    for i in range(10):
        w.append(i % 2, T.ns_to_tsc(i * 100), T.TRC_SCHED_WAKE, (1, i))
    w.close()
    data = buf.getvalue()
    # first chunk: cpu 0 reached 64 bytes after 3 records of 20 bytes (60) + 1 = 80 bytes
    assert data[:12] == T.cpu_change_record(0, 80)
    tf = T.parse_trace(data)
    assert tf.cpus == [0, 1]
    assert [r.words[1] for r in tf.per_cpu[0]] == [0, 2, 4, 6, 8]
    assert [r.words[1] for r in tf.per_cpu[1]] == [1, 3, 5, 7, 9]
    assert [r.words[1] for r in tf.records()] == list(range(10))
    assert tf.chunks >= 3 and len(tf) == 10
    assert w.records == 10 and w.bytes_written == len(data)
    assert tf.first_tsc() == 0 and tf.last_tsc() == T.ns_to_tsc(900)


def test_reader_rejects_bad_windows():
    data = T.cpu_change_record(0, 100) + T.encode_record(1, (), 5)
    with pytest.raises(T.TraceFormatError):
        T.parse_trace(data)
    # a bare stream without CPU-change records is read as pCPU 0
    tf = T.parse_trace(T.encode_record(T.TRC_SCHED_WAKE, (1, 0), 7))
    assert tf.per_cpu[0][0].tsc == 7


def test_event_mask():
    buf = io.BytesIO()
    w = T.TraceWriter(buf, 1, threadsafe=False, event_mask=T.TRC_GEN)
    w.append(0, 1, T.TRC_SCHED_WAKE, (1, 0))
    w.append(0, 2, T.TRC_LOST_RECORDS, (0, 0, 0, 0))
    w.close()
    tf = T.parse_trace(buf.getvalue())
    assert [r.event for r in tf.records()] == [T.TRC_LOST_RECORDS]


def test_threadsafe_appends():
    buf = io.BytesIO()
    w = T.TraceWriter(buf, 4, chunk_bytes=256)
    n = 2000

    def producer(cpu: int) -> None:
        for i in range(n):
            w.append_ns(cpu, i, T.TRC_SCHED_WAKE, (cpu, i))

    threads = [threading.Thread(target=producer, args=(c,)) for c in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    w.close()
    tf = T.parse_trace(buf.getvalue())
    for cpu in range(4):
        assert [r.words for r in tf.per_cpu[cpu]] == [(cpu, i) for i in range(n)]


def test_host_tracer_hook():
    buf = io.BytesIO()
    w = T.TraceWriter(buf, 2)
    tracer = T.host_tracer(w, now_ns=lambda: 1000, current_cpu=lambda: 1)
    tracer(T.TRC_SCHED_BLOCK, [3, 0])
    w.close()
    (rec,) = T.parse_trace(buf.getvalue()).records()
    assert (rec.cpu, rec.tsc, rec.event, rec.words, rec.ns) == (1, 2400, T.TRC_SCHED_BLOCK,
                                                                 (3, 0), 1000)


def test_event_names():
    assert T.event_name(0x0002_1101) == "runstate_change runnable->running"
    assert T.event_name(T.TRC_CSCHED2_CREDIT_BURN) == "csched2:credit_burn"
    assert T.event_name(0x0002_2A02) == "null:vcpu_assign"
    assert T.event_name(0x0123_4567) == "0x01234567"
