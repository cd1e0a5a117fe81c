"""P2M: extents with lazily materialised per-page entries.

Deterministic cases for splitting/replacing, removal, runs, accounting and
listeners, then a randomized differential test against a dict-per-page model.
"""

from __future__ import annotations

import random

import pytest

from pyxen.hypervisor.p2m import P2M, Access, P2MEntry, P2MRun, P2MType


def _recorder(p2m: P2M) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    p2m.subscribe(lambda gfn, count: calls.append((gfn, count)))
    return calls


# -- lookups and overlapping set_range ---------------------------------------------------

def test_lookup_of_a_set_range_offsets_the_mfn_and_keeps_type_and_rights():
    p = P2M()
    p.set_range(0x100, 0x5000, 16, P2MType.SPECIAL, Access.RX)
    assert p.lookup(0xFF) is None
    assert p.lookup(0x110) is None
    e = p.lookup(0x10A)
    assert e == P2MEntry(0x500A, P2MType.SPECIAL, Access.RX, 5)
    assert isinstance(e.rights, int) and not isinstance(e.rights, Access)
    assert len(p) == 16


def test_set_range_inside_an_extent_splits_it_in_three():
    p = P2M()
    p.set_range(10, 1000, 20)
    for g in range(10, 30):        # materialise every page first: the cache must follow
        p.lookup(g)
    p.set_range(15, 5000, 4, P2MType.RAM_RO, Access.R)
    assert [p.lookup(g).mfn for g in range(10, 15)] == list(range(1000, 1005))
    assert [p.lookup(g).mfn for g in range(15, 19)] == list(range(5000, 5004))
    assert [p.lookup(g).mfn for g in range(19, 30)] == list(range(1009, 1020))
    assert p.lookup(16).type == P2MType.RAM_RO and p.lookup(16).access == Access.R
    assert p.lookup(19).type == P2MType.RAM_RW and p.lookup(19).access == Access.RWX
    assert len(p) == 20
    assert p.runs() == [P2MRun(10, 1000, 5, Access.RWX), P2MRun(15, 5000, 4, Access.R),
                        P2MRun(19, 1009, 11, Access.RWX)]


def test_set_range_spanning_several_extents_replaces_exactly_the_covered_pages():
    p = P2M()
    p.set_range(0, 100, 10)
    p.set_range(10, 300, 10, access=Access.RW)
    p.set_range(25, 500, 5)
    p.set_range(5, 900, 22)                     # [5, 27): ends in the third extent
    assert [p.lookup(g).mfn for g in range(0, 5)] == [100, 101, 102, 103, 104]
    assert [p.lookup(g).mfn for g in range(5, 27)] == list(range(900, 922))
    assert [p.lookup(g).mfn for g in range(27, 30)] == [502, 503, 504]
    assert p.lookup(24).access == Access.RWX    # the hole at 20..24 got filled too
    assert len(p) == 30
    assert p.restricted_pages == 0              # the RW extent was fully replaced


def test_set_range_with_the_same_start_replaces_the_old_extent():
    p = P2M()
    p.set_range(40, 100, 8)
    p.lookup(41)
    p.set_range(40, 200, 3)
    assert p.lookup(41).mfn == 201
    assert p.lookup(43).mfn == 103
    assert p.backing() and sum(n for _, n in p.backing()) == 8


def test_non_positive_count_changes_nothing():
    p = P2M()
    calls = _recorder(p)
    p.set_range(0, 10, 0)
    p.set_range(0, 10, -3)
    assert len(p) == 0 and p.lookup(0) is None and calls == []


# -- removal -------------------------------------------------------------------------------

def test_remove_from_the_middle_returns_the_entries_that_were_there():
    p = P2M()
    p.set_range(0, 50, 10, P2MType.GRANT_MAP_RO, Access.R)
    p.lookup(4)
    got = p.remove(3, 4)
    assert got == [P2MEntry(53 + i, P2MType.GRANT_MAP_RO, Access.R, 1) for i in range(4)]
    assert [g for g in range(10) if p.lookup(g) is None] == [3, 4, 5, 6]
    assert p.lookup(7).mfn == 57
    assert p.restricted_pages == 6
    assert p.remove(3, 4) == []


def test_removed_extents_reports_each_backing_piece_in_gfn_order():
    p = P2M()
    p.set_range(0, 100, 4)
    p.set_range(4, 700, 4)
    p.set_range(12, 40, 4)
    assert p.removed_extents(2, 12) == [(102, 2), (700, 4), (40, 2)]
    assert [g for g in range(16) if p.lookup(g) is not None] == [0, 1, 14, 15]
    assert p.lookup(14).mfn == 42
    assert p.removed_extents(2, 12) == []


def test_clear_empties_everything_including_materialised_entries():
    p = P2M()
    p.set_range(0, 10, 10, access=Access.RX)
    p.lookup(3)
    p.clear()
    assert p.lookup(3) is None and len(p) == 0 and p.restricted_pages == 0
    assert p.runs() == [] and p.backing() == [] and p.max_gfn() == 0


# -- views -----------------------------------------------------------------------------------

def test_runs_merge_adjacent_extents_only_when_mfns_continue_and_rights_match():
    p = P2M()
    p.set_range(0, 100, 4)
    p.set_range(4, 104, 4, P2MType.SPECIAL)          # continues: merged (type not compared)
    p.set_range(8, 200, 2)                           # mfn jumps: new run
    p.set_range(10, 202, 2, access=Access.RW)        # rights differ: new run
    p.set_range(13, 205, 2, access=Access.RW)        # gfn gap at 12: new run
    assert p.runs() == [
        P2MRun(0, 100, 8, Access.RWX),
        P2MRun(8, 200, 2, Access.RWX),
        P2MRun(10, 202, 2, Access.RW),
        P2MRun(13, 205, 2, Access.RW),
    ]
    # A window clips runs at both ends; `last` is inclusive.
    assert p.runs(2, 9) == [P2MRun(2, 102, 6, Access.RWX), P2MRun(8, 200, 2, Access.RWX)]
    assert p.runs(11, 13) == [P2MRun(11, 203, 1, Access.RW), P2MRun(13, 205, 1, Access.RW)]
    assert p.runs(15, 100) == []


def test_entries_backing_and_max_gfn():
    p = P2M()
    assert p.max_gfn() == 0
    p.set_range(30, 7, 2)
    p.set_range(5, 90, 3, access=Access.R)
    assert list(p.entries()) == [
        (5, P2MEntry(90, P2MType.RAM_RW, Access.R, 1)),
        (6, P2MEntry(91, P2MType.RAM_RW, Access.R, 1)),
        (7, P2MEntry(92, P2MType.RAM_RW, Access.R, 1)),
        (30, P2MEntry(7, P2MType.RAM_RW, Access.RWX, 7)),
        (31, P2MEntry(8, P2MType.RAM_RW, Access.RWX, 7)),
    ]
    assert sorted(p.backing()) == [(7, 2), (90, 3)]
    assert p.max_gfn() == 31
    p.remove(31)
    assert p.max_gfn() == 30
    p.remove(30)
    assert p.max_gfn() == 7


def test_restricted_pages_follow_splits_and_replacements():
    p = P2M()
    p.set_range(0, 0x1000, 100, access=Access.R)
    assert p.restricted_pages == 100
    p.set_range(10, 0x2000, 10)                      # RWX hole in the middle
    assert p.restricted_pages == 90
    p.set_range(50, 0x3000, 60, access=Access.RX)    # 50 replace R pages, 10 new
    assert p.restricted_pages == 100
    p.remove(0, 5)
    assert p.restricted_pages == 95
    p.set_range(0, 0x4000, 200)                      # everything RWX again
    assert p.restricted_pages == 0


# -- listeners -------------------------------------------------------------------------------

def test_listeners_are_told_which_range_changed():
    p = P2M()
    calls = _recorder(p)
    p.set_range(8, 100, 4)
    p.remove(20, 3)                  # nothing there: nobody is told
    p.removed_extents(30, 2)         # same
    p.remove(9, 2)
    p.removed_extents(6, 10)
    assert calls == [(8, 4), (9, 2), (6, 10)]


def test_listener_sees_the_new_state_and_unsubscribe_stops_calls():
    p = P2M()
    seen = []

    def listener(gfn, count):
        seen.append([None if p.lookup(g) is None else p.lookup(g).mfn
                     for g in range(gfn, gfn + count)])

    p.subscribe(listener)
    p.set_range(0, 10, 2)
    p.set_range(1, 50, 2)
    p.remove(0, 2)
    p.unsubscribe(listener)
    p.unsubscribe(listener)          # a second unsubscribe is harmless
    p.set_range(0, 70, 1)
    assert seen == [[10, 11], [50, 51], [None, None]]


# -- randomized differential test ------------------------------------------------------

class ModelP2M:
    """One dict entry per page: obviously right, slow."""

    def __init__(self):
        self.pages: dict[int, tuple[int, P2MType, Access]] = {}

    def set_range(self, gfn, mfn, count, type_, access):
        for i in range(max(count, 0)):
            self.pages[gfn + i] = (mfn + i, type_, access)

    def remove(self, gfn, count):
        out = []
        for g in range(gfn, gfn + count):
            if g in self.pages:
                out.append((g, self.pages.pop(g)))
        return out

    def runs(self, first=0, last=None):
        out = []
        for g in sorted(self.pages):
            if g < first or (last is not None and g > last):
                continue
            mfn, _, access = self.pages[g]
            if out:
                r = out[-1]
                if r.gfn + r.count == g and r.mfn + r.count == mfn and r.access == access:
                    out[-1] = r._replace(count=r.count + 1)
                    continue
            out.append(P2MRun(g, mfn, 1, access))
        return out


GFN_SPACE = 160


def _check_same(p: P2M, m: ModelP2M, rng: random.Random) -> None:
    for g in range(GFN_SPACE + 8):
        e = p.lookup(g)
        want = m.pages.get(g)
        if want is None:
            assert e is None, f"gfn {g} should be empty, p2m says {e}"
        else:
            mfn, type_, access = want
            assert e == P2MEntry(mfn, type_, access, int(access)), f"gfn {g}"
    assert len(p) == len(m.pages)
    assert p.restricted_pages == sum(1 for _, _, a in m.pages.values() if a != Access.RWX)
    assert p.runs() == m.runs()
    first = rng.randrange(GFN_SPACE)
    last = rng.randrange(first, GFN_SPACE + 4)
    assert p.runs(first, last) == m.runs(first, last)
    assert [(g, (e.mfn, e.type, e.access)) for g, e in p.entries()] == sorted(m.pages.items())
    backed = sorted(mfn + i for mfn, n in p.backing() for i in range(n))
    assert backed == sorted(v[0] for v in m.pages.values())
    assert p.max_gfn() == (max(m.pages) if m.pages else 0)


@pytest.mark.parametrize("seed", range(6))
def test_randomized_against_a_page_dict_model(seed):
    rng = random.Random(seed)
    p, m = P2M(), ModelP2M()
    calls = _recorder(p)
    accesses = [Access.RWX, Access.RWX, Access.R, Access.RX, Access.RW, Access.NONE]
    for _step in range(250):
        gfn = rng.randrange(GFN_SPACE)
        count = rng.choice([1, 1, 2, 3, 5, 8, 17, 40])
        before = len(calls)
        op = rng.random()
        if op < 0.5:
            # Neighbouring mfns make adjacent extents mergeable in runs().
            mfn = rng.choice([gfn + 1000, rng.randrange(1, 5000)])
            type_ = rng.choice(list(P2MType))
            access = rng.choice(accesses)
            p.set_range(gfn, mfn, count, type_, access)
            m.set_range(gfn, mfn, count, type_, access)
            assert calls[before:] == [(gfn, count)]
        elif op < 0.75:
            got = p.remove(gfn, count)
            want = m.remove(gfn, count)
            assert got == [P2MEntry(mfn, t, a, int(a)) for _, (mfn, t, a) in want]
            assert calls[before:] == ([(gfn, count)] if want else [])
        elif op < 0.9:
            got = p.removed_extents(gfn, count)
            want = m.remove(gfn, count)
            assert [mfn + i for mfn, n in got for i in range(n)] == [v[0] for _, v in want]
            assert all(n > 0 for _, n in got)
            assert calls[before:] == ([(gfn, count)] if want else [])
        else:
            # Materialise a few entries so later changes must invalidate them.
            for _ in range(10):
                p.lookup(rng.randrange(GFN_SPACE))
        _check_same(p, m, rng)
