"""MachineMemory: best-fit frame allocator, coalescing free, zeroed frames, owner table."""

from __future__ import annotations

import ctypes
import os
import random

import pytest

from pyxen.hypervisor.memory import NO_OWNER, PAGE_SIZE, MachineMemory, OutOfMemory


def _frames(extents) -> list[int]:
    return [mfn + i for mfn, n in extents for i in range(n)]


def test_size_must_be_a_positive_multiple_of_a_page():
    for bad in (0, -PAGE_SIZE, PAGE_SIZE + 1, 100):
        with pytest.raises(ValueError):
            MachineMemory(bad)


def test_frame_zero_is_never_handed_out():
    mm = MachineMemory(16 * PAGE_SIZE)
    assert mm.nr_frames == 16 and mm.free_frames == 15
    got = mm.alloc(15, owner=3)
    assert got == [(1, 15)]
    assert mm.free_frames == 0
    assert mm.owner[0] == NO_OWNER
    with pytest.raises(OutOfMemory):
        mm.alloc(1)


def test_alloc_of_nothing_returns_nothing():
    mm = MachineMemory(4 * PAGE_SIZE)
    assert mm.alloc(0) == [] and mm.alloc(-2) == []
    assert mm.free_frames == 3


def test_out_of_memory_leaves_the_allocator_unchanged():
    mm = MachineMemory(8 * PAGE_SIZE)
    mm.alloc(4, owner=1)
    with pytest.raises(OutOfMemory):
        mm.alloc(4, owner=2)
    assert mm.free_frames == 3
    assert [mm.owner[f] for f in range(8)].count(2) == 0
    assert _frames(mm.alloc(3, owner=2)) == [5, 6, 7]


def _holey(nr_frames: int, holes: list[tuple[int, int]]) -> MachineMemory:
    """Everything allocated except the given (mfn, count) holes."""
    mm = MachineMemory(nr_frames * PAGE_SIZE)
    assert mm.alloc(nr_frames - 1, owner=9) == [(1, nr_frames - 1)]
    for hole in holes:
        mm.free([hole])
    return mm


def test_best_fit_picks_the_smallest_hole_that_is_large_enough():
    mm = _holey(40, [(3, 3), (10, 5), (20, 10)])
    assert mm.alloc(4) == [(10, 4)]       # the 5-hole, not the first or the largest
    assert mm.alloc(3) == [(3, 3)]        # exact fit
    assert mm.alloc(6) == [(20, 6)]
    assert mm.free_frames == 5            # left: (14, 1) and (26, 4)


def test_fragmented_memory_gives_several_extents_in_address_order():
    mm = _holey(40, [(2, 2), (8, 1), (30, 4)])
    got = mm.alloc(6, owner=4)
    assert got == [(2, 2), (8, 1), (30, 3)]
    assert mm.free_frames == 1
    assert all(mm.owner[f] == 4 for f in _frames(got))
    assert mm.alloc(1) == [(33, 1)]


def test_free_coalesces_neighbours_in_any_order():
    mm = MachineMemory(32 * PAGE_SIZE)
    pieces = [mm.alloc(n)[0] for n in (3, 1, 7, 2, 9, 4, 5)]    # 31 frames in 7 pieces
    assert mm.free_frames == 0
    for i in (3, 0, 6, 2, 5, 1, 4):
        mm.free([pieces[i]])
    assert mm.free_frames == 31
    assert mm.alloc(31) == [(1, 31)]       # one run again: the pieces merged


def test_owner_table_follows_alloc_and_free():
    mm = MachineMemory(16 * PAGE_SIZE)
    a = mm.alloc(5, owner=1)
    b = mm.alloc(3, owner=2)
    assert [mm.owner[f] for f in _frames(a)] == [1] * 5
    assert [mm.owner[f] for f in _frames(b)] == [2] * 3
    mm.free(a)
    assert [mm.owner[f] for f in _frames(a)] == [NO_OWNER] * 5
    assert [mm.owner[f] for f in _frames(b)] == [2] * 3
    c = mm.alloc(2)                        # default owner: none (hypervisor's own)
    assert [mm.owner[f] for f in _frames(c)] == [NO_OWNER] * 2
    assert sum(1 for f in range(16) if mm.owner[f] == NO_OWNER) == 16 - 3


def test_freed_frames_read_back_as_zero_after_reallocation():
    mm = MachineMemory(8 * PAGE_SIZE)
    got = mm.alloc(7, owner=1)
    for f in _frames(got):
        mm.frame(f)[:] = bytes([f]) * PAGE_SIZE
    assert bytes(mm.frame(5)[:4]) == b"\x05\x05\x05\x05"
    mm.free(got)
    again = mm.alloc(7, owner=2)
    assert sorted(_frames(again)) == sorted(_frames(got))
    for f in _frames(again):
        assert bytes(mm.frame(f)) == bytes(PAGE_SIZE), f"frame {f} kept old data"


def test_host_address_and_frame_view_are_the_same_memory():
    mm = MachineMemory(4 * PAGE_SIZE)
    mm.frame(2)[100:104] = b"pyxn"
    assert ctypes.string_at(mm.host_address(2) + 100, 4) == b"pyxn"
    assert mm.host_address(3) - mm.host_address(2) == PAGE_SIZE
    assert len(mm.frame(3)) == PAGE_SIZE


def _holes(nr_frames: int, used: set[int]) -> list[tuple[int, int]]:
    holes, start = [], None
    for f in range(1, nr_frames + 1):
        free = f < nr_frames and f not in used
        if free and start is None:
            start = f
        elif not free and start is not None:
            holes.append((start, f - start))
            start = None
    return holes


@pytest.mark.parametrize("seed", range(5))
def test_randomized_alloc_free_against_a_model(seed):
    rng = random.Random(seed)
    nr = 96
    mm = MachineMemory(nr * PAGE_SIZE)
    live: list[tuple[list[tuple[int, int]], int]] = []      # (extents, owner)
    used: set[int] = set()
    for _ in range(300):
        if live and rng.random() < 0.45:
            extents, _owner = live.pop(rng.randrange(len(live)))
            # Free the extents of one allocation, sometimes piecewise.
            if len(extents) > 1 and rng.random() < 0.5:
                for e in extents:
                    mm.free([e])
            else:
                mm.free(extents)
            used -= set(_frames(extents))
        else:
            count = rng.choice([1, 1, 2, 3, 5, 8, 13])
            owner = rng.randrange(1, 50)
            free = nr - 1 - len(used)
            if count > free:
                with pytest.raises(OutOfMemory):
                    mm.alloc(count, owner=owner)
                continue
            holes = _holes(nr, used)
            fits = [h for h in holes if h[1] >= count]
            got = mm.alloc(count, owner=owner)
            if fits:
                best = min(fits, key=lambda h: h[1])          # first smallest hole
                assert got == [(best[0], count)]
            else:
                want, need = [], count
                for start, n in holes:
                    take = min(n, need)
                    want.append((start, take))
                    need -= take
                    if not need:
                        break
                assert got == want
            frames = _frames(got)
            assert 0 not in frames and not used & set(frames)
            used |= set(frames)
            live.append((got, owner))
        assert mm.free_frames == nr - 1 - len(used)
        owners = {f: o for extents, o in live for f in _frames(extents)}
        assert all(mm.owner[f] == owners.get(f, NO_OWNER) for f in range(nr))


def test_machine_memory_is_reserved_without_a_commit_charge():
    """A host's machine memory is address space, not committed memory: a process
    holding several large hosts must still be able to fork (pty tests, daemons)."""
    if open("/proc/sys/vm/overcommit_memory").read().strip() == "2":
        pytest.skip("strict overcommit charges every private mapping")
    mm = MachineMemory(64 << 30)                # more than the machine's RAM
    flags = None
    with open("/proc/self/smaps") as smaps:
        inside = False
        for line in smaps:
            if "-" in line.split()[0] and not line.startswith("VmFlags"):
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                inside = start <= mm.host_base < end
            elif inside and line.startswith("VmFlags:"):
                flags = line.split()[1:]
                break
    assert flags is not None and "nr" in flags, flags
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
