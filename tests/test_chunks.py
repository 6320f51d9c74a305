"""Tests of btrfsscan.volumes.chunks: the chunk map and the stripe arithmetic.

Hand-worked examples for every profile, hypothesis properties checked against
an independent *inverse* model (physical -> logical), validation of every bad
field, and, when the kernel-made fixtures exist, a comparison with what
btrfs-map-logical printed for them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btrfsscan.errors import (
    BtrfsScanError,
    CorruptionError,
    ReadError,
    UnsupportedError,
)
from btrfsscan.format.constants import BTRFS_STRIPE_LEN, BlockGroupFlag, Profile
from btrfsscan.volumes.chunks import (
    Chunk,
    ChunkMap,
    PhysicalRange,
    Stripe,
    validate_chunk,
)

SECTOR = 4096
SL = BTRFS_STRIPE_LEN
KiB = 1024
MiB = 1 << 20
DATA = int(BlockGroupFlag.DATA)
META = int(BlockGroupFlag.METADATA)
SYSTEM = int(BlockGroupFlag.SYSTEM)

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def S(devid: int, offset: int) -> Stripe:
    return Stripe(devid, offset, bytes([devid]) * 16)


def make_chunk(
    profile: Profile,
    stripes: list[Stripe] | tuple[Stripe, ...],
    length: int,
    logical: int = 0x100000,
    *,
    kind: int = DATA,
    sub_stripes: int | None = None,
    stripe_len: int = SL,
    num_stripes: int | None = None,
    sector_size: int = SECTOR,
) -> Chunk:
    if sub_stripes is None:
        sub_stripes = 2 if profile is Profile.RAID10 else 1
    return Chunk(
        logical=logical,
        length=length,
        owner=2,
        stripe_len=stripe_len,
        type=kind | profile.value,
        io_align=stripe_len,
        io_width=stripe_len,
        sector_size=sector_size,
        num_stripes=len(stripes) if num_stripes is None else num_stripes,
        sub_stripes=sub_stripes,
        stripes=tuple(stripes),
    )


def PR(logical, length, mirror, devid, physical, index, role="data") -> PhysicalRange:
    return PhysicalRange(logical, length, mirror, devid, physical, index, role)


# ---------------------------------------------------------------------------
# hand-worked examples


L0 = 0x100000  # chunk logical start of the examples


def test_single():
    c = make_chunk(Profile.SINGLE, [S(1, 0x200000)], 8 * MiB)
    m = ChunkMap([c])
    assert m.map(L0 + 5000, 10000) == [PR(L0 + 5000, 10000, 1, 1, 0x200000 + 5000, 0)]
    # no split at stripe boundaries for SINGLE
    assert m.map(L0 + SL - 10, 20) == [PR(L0 + SL - 10, 20, 1, 1, 0x200000 + SL - 10, 0)]
    assert m.num_copies(L0) == 1
    assert c.profile is Profile.SINGLE and c.type_names == ["DATA"]
    assert c.data_stripes == 1 and c.device_length == 8 * MiB and c.end == L0 + 8 * MiB


def test_dup():
    c = make_chunk(Profile.DUP, [S(1, 0x1000000), S(1, 0x2000000)], 8 * MiB, kind=META)
    m = ChunkMap([c])
    assert m.map(L0 + 0x4000, 0x4000) == [
        PR(L0 + 0x4000, 0x4000, 1, 1, 0x1004000, 0),
        PR(L0 + 0x4000, 0x4000, 2, 1, 0x2004000, 1),
    ]
    assert m.num_copies(L0 + 1) == 2 and c.num_copies == 2
    assert c.type_names == ["METADATA"]


def test_raid1c3():
    c = make_chunk(Profile.RAID1C3, [S(3, 0x500000), S(1, 0x100000), S(2, 0x900000)], 4 * MiB)
    got = ChunkMap([c]).map(L0 + 123, 1)
    assert got == [
        PR(L0 + 123, 1, 1, 3, 0x500000 + 123, 0),
        PR(L0 + 123, 1, 2, 1, 0x100000 + 123, 1),
        PR(L0 + 123, 1, 3, 2, 0x900000 + 123, 2),
    ]
    assert c.num_copies == 3


def test_raid1c4_num_copies():
    c = make_chunk(Profile.RAID1C4, [S(d, d * MiB) for d in (1, 2, 3, 4)], MiB)
    assert [r.devid for r in ChunkMap([c]).map(L0, 4096)] == [1, 2, 3, 4]
    assert c.num_copies == 4


RAID0_STRIPES = [S(1, 0x10000000), S(2, 0x20000000), S(3, 0x30000000)]


def test_raid0_formula():
    c = make_chunk(Profile.RAID0, RAID0_STRIPES, 3 * 4 * SL)
    m = ChunkMap([c])
    # off = 5 stripes + 100: stripe_nr 5 -> index 5 % 3 = 2, row 5 // 3 = 1
    assert m.map(L0 + 5 * SL + 100, 50) == [PR(L0 + 5 * SL + 100, 50, 1, 3, 0x30000000 + SL + 100, 2)]
    # crossing a stripe boundary: stripe_nr 1 (dev 2, row 0) then stripe_nr 2 (dev 3, row 0)
    assert m.map(L0 + 2 * SL - 10, 20) == [
        PR(L0 + 2 * SL - 10, 10, 1, 2, 0x20000000 + SL - 10, 1),
        PR(L0 + 2 * SL, 10, 1, 3, 0x30000000, 2),
    ]
    # stripe_nr 3 wraps to device 1, row 1
    assert m.map(L0 + 3 * SL, 1) == [PR(L0 + 3 * SL, 1, 1, 1, 0x10000000 + SL, 0)]
    assert c.data_stripes == 3 and c.device_length == 4 * SL and c.num_copies == 1


def test_raid10_formula():
    stripes = [S(1, 0x100000), S(2, 0x200000), S(3, 0x300000), S(4, 0x400000)]
    c = make_chunk(Profile.RAID10, stripes, 2 * 3 * SL)
    m = ChunkMap([c])
    # factor 2; stripe_nr 3 -> col 1, row 1 -> stripes 2 and 3 at +64K
    assert m.map(L0 + 3 * SL + 7, 9) == [
        PR(L0 + 3 * SL + 7, 9, 1, 3, 0x300000 + SL + 7, 2),
        PR(L0 + 3 * SL + 7, 9, 2, 4, 0x400000 + SL + 7, 3),
    ]
    # stripe_nr 4 -> col 0, row 2 -> stripes 0 and 1 at +128K
    assert m.map(L0 + 4 * SL, SL) == [
        PR(L0 + 4 * SL, SL, 1, 1, 0x100000 + 2 * SL, 0),
        PR(L0 + 4 * SL, SL, 2, 2, 0x200000 + 2 * SL, 1),
    ]
    assert c.num_copies == 2 and c.data_stripes == 2 and c.device_length == 3 * SL


def test_raid5_formula():
    stripes = [S(1, 0), S(2, 0x10000000), S(3, 0x20000000)]
    c = make_chunk(Profile.RAID5, stripes, 2 * 3 * SL)
    m = ChunkMap([c])
    # data 2; stripe_nr 2 -> row 1, col 0 -> slot (0+1)%3 = 1; P slot (2+1)%3 = 0
    assert m.map(L0 + 2 * SL + 4096, 4096, parity=True) == [
        PR(L0 + 2 * SL + 4096, 4096, 1, 2, 0x10000000 + SL + 4096, 1),
        PR(L0 + 2 * SL + 4096, 4096, 2, 1, 0 + SL + 4096, 0, "P"),
    ]
    # row 0: data on slots 0, 1, parity on slot 2
    assert m.map(L0 + SL - 100, 200, parity=True) == [
        PR(L0 + SL - 100, 100, 1, 1, SL - 100, 0),
        PR(L0 + SL - 100, 100, 2, 3, 0x20000000 + SL - 100, 2, "P"),
        PR(L0 + SL, 100, 1, 2, 0x10000000, 1),
        PR(L0 + SL, 100, 2, 3, 0x20000000, 2, "P"),
    ]
    # without parity: data only, mirror 1; stripe_nr 5 -> row 2, col 1 -> slot (1+2)%3 = 0
    assert m.map(L0 + 5 * SL, 1) == [PR(L0 + 5 * SL, 1, 1, 1, 0 + 2 * SL, 0)]
    assert c.num_copies == 2 and c.data_stripes == 2 and c.device_length == 3 * SL


def test_raid6_formula():
    stripes = [S(1, 0x100000), S(2, 0x200000), S(3, 0x300000), S(4, 0x400000)]
    c = make_chunk(Profile.RAID6, stripes, 2 * 4 * SL)
    m = ChunkMap([c])
    # data 2; stripe_nr 5 -> row 2, col 1 -> slot 3; P (2+2)%4 = 0; Q (3+2)%4 = 1
    off = 5 * SL + 12345
    assert m.map(L0 + off, 10, parity=True) == [
        PR(L0 + off, 10, 1, 4, 0x400000 + 2 * SL + 12345, 3),
        PR(L0 + off, 10, 2, 1, 0x100000 + 2 * SL + 12345, 0, "P"),
        PR(L0 + off, 10, 3, 2, 0x200000 + 2 * SL + 12345, 1, "Q"),
    ]
    # row 3: col 0 -> slot 3, col 1 -> slot 0, P slot 1, Q slot 2
    assert [(r.role, r.stripe_index) for r in m.map(L0 + 6 * SL, 2 * SL, parity=True)] == [
        ("data", 3), ("P", 1), ("Q", 2), ("data", 0), ("P", 1), ("Q", 2)]
    assert c.num_copies == 3 and m.num_copies(L0) == 3 and c.data_stripes == 2


def test_mixed_type_names_and_validation():
    c = make_chunk(Profile.SINGLE, [S(1, 0)], MiB, kind=DATA | META)
    assert c.type_names == ["DATA", "METADATA"]
    assert validate_chunk(c, sectorsize=SECTOR) == []


# ---------------------------------------------------------------------------
# ChunkMap behaviour


def three_chunks() -> ChunkMap:
    a = make_chunk(Profile.SINGLE, [S(1, 0x100000)], MiB, logical=1 * MiB)
    b = make_chunk(Profile.RAID0, [S(1, 0x900000), S(2, 0x900000)], 2 * MiB, logical=2 * MiB)
    c = make_chunk(Profile.SINGLE, [S(2, 0)], MiB, logical=8 * MiB)  # gap [4 MiB, 8 MiB)
    m = ChunkMap()
    for chunk in (c, a, b):  # out of order on purpose
        m.add(chunk)
    return m


def test_order_len_lookup():
    m = three_chunks()
    assert len(m) == 3
    assert [c.logical for c in m] == [MiB, 2 * MiB, 8 * MiB]
    assert m.lookup(MiB).logical == MiB
    assert m.lookup(2 * MiB - 1).logical == MiB
    assert m.lookup(4 * MiB - 1).logical == 2 * MiB
    for bad in (0, MiB - 1, 4 * MiB, 8 * MiB - 1, 9 * MiB, -5):
        with pytest.raises(ReadError, match="is not mapped by any chunk"):
            m.lookup(bad)
    with pytest.raises(ReadError) as e:
        m.lookup(4 * MiB)
    assert str(e.value) == f"logical address 0x{4 * MiB:x} ({4 * MiB}) is not mapped by any chunk"
    with pytest.raises(ReadError):
        m.num_copies(0)


def test_map_continues_into_next_chunk():
    m = three_chunks()
    got = m.map(2 * MiB - 100, 300)
    assert got == [
        PR(2 * MiB - 100, 100, 1, 1, 0x100000 + MiB - 100, 0),
        PR(2 * MiB, 200, 1, 1, 0x900000, 0),
    ]


def test_map_into_gap_raises():
    m = three_chunks()
    with pytest.raises(ReadError, match=f"0x{4 * MiB:x}"):
        m.map(4 * MiB - 10, 20)
    with pytest.raises(ReadError, match=f"0x{9 * MiB:x}"):
        m.map(9 * MiB - 10, 20)


def test_map_zero_and_negative_length():
    m = three_chunks()
    assert m.map(MiB, 0) == []
    assert m.map(0, 0) == []  # even unmapped: nothing to map
    with pytest.raises(ValueError):
        m.map(MiB, -1)


def test_overlap_refused_naming_both_ranges():
    m = ChunkMap([make_chunk(Profile.SINGLE, [S(1, 0)], MiB, logical=MiB)])
    for logical, length in ((MiB + 4096, 4096), (0, MiB + 4096), (2 * MiB - 4096, MiB), (0, 4 * MiB)):
        other = make_chunk(Profile.SINGLE, [S(1, 8 * MiB)], length, logical=logical)
        with pytest.raises(CorruptionError) as e:
            m.add(other)
        msg = str(e.value)
        assert f"[0x{logical:x}, 0x{logical + length:x})" in msg
        assert f"[0x{MiB:x}, 0x{2 * MiB:x})" in msg
    # touching is fine
    m.add(make_chunk(Profile.SINGLE, [S(1, 8 * MiB)], MiB, logical=0))
    m.add(make_chunk(Profile.SINGLE, [S(1, 9 * MiB)], MiB, logical=2 * MiB))
    assert len(m) == 3


def test_identical_chunk_added_twice_is_noop():
    c = make_chunk(Profile.DUP, [S(1, 0), S(1, MiB)], MiB, kind=SYSTEM)
    m = ChunkMap([c])
    m.add(c)  # sys_chunk_array, then the chunk tree
    assert len(m) == 1
    with pytest.raises(CorruptionError):
        m.add(make_chunk(Profile.DUP, [S(1, 0), S(1, 2 * MiB)], MiB, kind=SYSTEM))


@pytest.mark.parametrize(
    "chunk, error",
    [
        (make_chunk(Profile.RAID0, [], MiB), CorruptionError),
        (make_chunk(Profile.RAID0, [S(1, 0)], MiB, num_stripes=2), CorruptionError),
        (make_chunk(Profile.RAID0, [S(1, 0), S(2, 0)], MiB, stripe_len=0), CorruptionError),
        (make_chunk(Profile.SINGLE, [S(1, 0)], 0), CorruptionError),
        (make_chunk(Profile.RAID10, [S(1, 0), S(2, 0), S(3, 0), S(4, 0)], MiB, sub_stripes=0), CorruptionError),
        (make_chunk(Profile.RAID10, [S(1, 0)], MiB, sub_stripes=2), CorruptionError),
        (make_chunk(Profile.RAID5, [S(1, 0)], MiB), CorruptionError),
        (make_chunk(Profile.RAID6, [S(1, 0), S(2, 0)], MiB), CorruptionError),
        (
            Chunk(0, MiB, 2, SL, DATA | Profile.RAID1.value | Profile.RAID0.value, SL, SL, SECTOR, 2, 1,
                  (S(1, 0), S(2, 0))),
            CorruptionError,
        ),
        (Chunk(0, MiB, 2, SL, DATA | 1 << 20, SL, SL, SECTOR, 1, 1, (S(1, 0),)), CorruptionError),
        (Chunk(0, MiB, 2, SL, DATA | int(BlockGroupFlag.REMAPPED), SL, SL, SECTOR, 1, 1, (S(1, 0),)),
         UnsupportedError),
    ],
    ids=["no-stripes", "stripes-mismatch", "stripe_len-0", "length-0", "raid10-sub0", "raid10-short",
         "raid5-1", "raid6-2", "two-profiles", "unknown-bit", "remapped"],
)
def test_add_refuses_unmappable(chunk, error):
    m = ChunkMap()
    with pytest.raises(error) as e:
        m.add(chunk)
    assert f"0x{chunk.logical:x}" in str(e.value)
    assert len(m) == 0
    assert validate_chunk(chunk, sectorsize=SECTOR)  # validate_chunk flags them too


def test_add_accepts_unusual_but_mappable():
    # RAID10 with odd stripe count (last stripe unused) and stripe_len 32K: the
    # kernel would refuse them, but the arithmetic is well defined.
    odd = make_chunk(Profile.RAID10, [S(d, 0) for d in (1, 2, 3)], 6 * SL)
    small = make_chunk(Profile.RAID0, [S(1, 0), S(2, 0)], MiB, logical=64 * MiB, stripe_len=32 * KiB)
    m = ChunkMap([odd, small])
    assert validate_chunk(odd, sectorsize=SECTOR) and validate_chunk(small, sectorsize=SECTOR)
    assert [r.stripe_index for r in m.map(L0 + SL, 1)] == [0, 1]  # factor 1: every stripe on 0/1
    assert m.map(64 * MiB + 32 * KiB, 1)[0].devid == 2


# ---------------------------------------------------------------------------
# validate_chunk


def good(profile: Profile, n: int | None = None, **kw) -> Chunk:
    counts = {Profile.SINGLE: 1, Profile.DUP: 2, Profile.RAID0: 3, Profile.RAID1: 2, Profile.RAID1C3: 3,
              Profile.RAID1C4: 4, Profile.RAID10: 4, Profile.RAID5: 3, Profile.RAID6: 4}
    n = counts[profile] if n is None else n
    if profile is Profile.DUP:
        stripes = [S(1, 0), S(1, 64 * MiB)]
    else:
        stripes = [S(d + 1, 0) for d in range(n)]
    return make_chunk(profile, stripes, 12 * SL * 4, **kw)


@pytest.mark.parametrize("profile", list(Profile))
def test_validate_good_chunks(profile):
    c = good(profile)
    assert validate_chunk(c, sectorsize=SECTOR) == []
    assert validate_chunk(c, sectorsize=SECTOR, device_sizes={1: 128 * MiB, 2: 3 * MiB, 3: 3 * MiB,
                                                                4: 3 * MiB}) == []
    ChunkMap([c])


def only(problems: list[str], *words: str, at: int = L0) -> None:
    """Exactly one problem, naming the chunk's logical address and ``words``."""
    assert len(problems) == 1, problems
    assert f"logical 0x{at:x} " in problems[0], problems
    for w in words:
        assert w in problems[0], problems


def test_validate_each_bad_field():
    base = good(Profile.RAID0)

    def v(c, **kw):
        return validate_chunk(c, sectorsize=SECTOR, **kw)

    only(v(Chunk(**{**_fields(base), "num_stripes": 0, "stripes": ()})), "num_stripes")
    only(v(Chunk(**{**_fields(base), "num_stripes": 4})), "num_stripes")
    only(v(Chunk(**{**_fields(base), "stripe_len": 0})), "stripe_len")
    only(v(Chunk(**{**_fields(base), "stripe_len": 3})), "stripe_len")
    only(v(Chunk(**{**_fields(base), "stripe_len": 2 * SL})), "stripe_len")
    only(v(Chunk(**{**_fields(base), "length": 0})), "length")
    only(v(Chunk(**{**_fields(base), "length": base.length + 512})), "length")
    only(v(Chunk(**{**_fields(base), "length": 0xFFFFFFFF << 16})), "length")
    only(v(Chunk(**{**_fields(base), "logical": L0 + 512})), "logical", "aligned", at=L0 + 512)
    only(v(Chunk(**{**_fields(base), "sector_size": 512})), "sector_size")
    only(v(Chunk(**{**_fields(base), "type": base.type | 1 << 40})), "type", "unknown")
    only(v(Chunk(**{**_fields(base), "type": Profile.RAID0.value})), "type", "DATA")
    only(v(Chunk(**{**_fields(base), "type": base.type | SYSTEM})), "type", "SYSTEM")
    only(v(Chunk(**{**_fields(base), "type": base.type | Profile.RAID1.value})), "profile bits")
    only(v(Chunk(**{**_fields(base), "type": base.type | int(BlockGroupFlag.REMAPPED)})), "remap")
    only(v(Chunk(**{**_fields(base), "sub_stripes": 2})), "sub_stripes")
    only(v(base, device_sizes={1: 100 * MiB, 2: base.device_length - 1, 3: 100 * MiB}),
         "stripe 1", "devid 2", "device size")
    assert v(base, device_sizes={}) == []  # unknown devices are not checked


def _fields(c: Chunk) -> dict:
    return {f.name: getattr(c, f.name) for f in dataclasses.fields(Chunk)}


def test_validate_overflow_end():
    c = make_chunk(Profile.SINGLE, [S(1, 0)], 1 << 20, logical=(1 << 64) - 4096)
    problems = validate_chunk(c, sectorsize=SECTOR)
    assert any("overflows" in p for p in problems)


@pytest.mark.parametrize(
    "profile, n, sub, word",
    [
        (Profile.RAID10, 4, 0, "sub_stripes"),
        (Profile.RAID10, 4, 1, "sub_stripes"),
        (Profile.RAID10, 3, 2, "num_stripes"),
        (Profile.RAID10, 1, 2, "num_stripes"),
        (Profile.RAID1, 3, 1, "num_stripes"),
        (Profile.RAID1, 1, 1, "num_stripes"),
        (Profile.RAID1C3, 2, 1, "num_stripes"),
        (Profile.RAID1C4, 5, 1, "num_stripes"),
        (Profile.RAID5, 1, 1, "num_stripes"),
        (Profile.RAID6, 2, 1, "num_stripes"),
        (Profile.DUP, 1, 1, "num_stripes"),
        (Profile.DUP, 3, 1, "num_stripes"),
        (Profile.SINGLE, 2, 1, "num_stripes"),
        (Profile.RAID1, 2, 2, "sub_stripes"),
    ],
)
def test_validate_stripe_counts(profile, n, sub, word):
    c = make_chunk(profile, [S(d + 1, 0) for d in range(n)], 12 * SL, sub_stripes=sub)
    only(validate_chunk(c, sectorsize=SECTOR), word)


@pytest.mark.parametrize("profile, n", [(Profile.RAID0, 1), (Profile.RAID5, 2), (Profile.RAID6, 3),
                                        (Profile.RAID10, 2), (Profile.RAID0, 7), (Profile.RAID6, 9)])
def test_validate_accepts_kernel_stripe_counts(profile, n):
    c = make_chunk(profile, [S(d + 1, 0) for d in range(n)], 12 * SL)
    assert validate_chunk(c, sectorsize=SECTOR) == []
    c0 = make_chunk(profile, [S(d + 1, 0) for d in range(n)], 12 * SL,
                    sub_stripes=0 if profile is not Profile.RAID10 else 2)
    assert validate_chunk(c0, sectorsize=SECTOR) == []  # old kernels wrote sub_stripes 0


def test_validate_dup_overlap_on_device():
    c = make_chunk(Profile.DUP, [S(1, 0), S(1, MiB - 4096)], MiB)
    only(validate_chunk(c, sectorsize=SECTOR, device_sizes={1: 64 * MiB}), "overlap")


# ---------------------------------------------------------------------------
# hypothesis: valid chunks of every profile against an inverse model

STRIPE_COUNTS = {
    Profile.SINGLE: st.just(1),
    Profile.DUP: st.just(2),
    Profile.RAID0: st.integers(1, 5),
    Profile.RAID1: st.just(2),
    Profile.RAID1C3: st.just(3),
    Profile.RAID1C4: st.just(4),
    Profile.RAID10: st.sampled_from([2, 4, 6]),
    Profile.RAID5: st.integers(2, 6),
    Profile.RAID6: st.integers(3, 6),
}


@st.composite
def valid_chunks(draw, profile: Profile | None = None, max_rows: int = 5) -> Chunk:
    if profile is None:
        profile = draw(st.sampled_from(list(Profile)))
    n = draw(STRIPE_COUNTS[profile])
    sub = 2 if profile is Profile.RAID10 else 1
    data = {Profile.RAID0: n, Profile.RAID10: n // 2, Profile.RAID5: n - 1, Profile.RAID6: n - 2}.get(profile, 1)
    rows = draw(st.integers(1, max_rows))
    dev_len = rows * SL
    logical = draw(st.integers(0, 1 << 20)) * SECTOR
    if profile is Profile.DUP:
        devid = draw(st.integers(1, 9))
        first = draw(st.integers(0, 1 << 16)) * SECTOR
        gap = draw(st.integers(0, 64)) * SECTOR
        offsets = [first, first + dev_len + gap]
        if draw(st.booleans()):
            offsets.reverse()
        stripes = [S(devid, o) for o in offsets]
    else:
        devids = draw(st.lists(st.integers(1, 12), min_size=n, max_size=n, unique=True))
        stripes = [S(d, draw(st.integers(0, 1 << 16)) * SECTOR) for d in devids]
    kind = draw(st.sampled_from([DATA, META, SYSTEM, DATA | META]))
    return make_chunk(profile, stripes, rows * data * SL, logical, kind=kind, sub_stripes=sub)


def inverse(chunk: Chunk, k: int, p: int) -> tuple[int, int, str] | None:
    """Independent model: which (logical, mirror, role) lives at byte ``p`` of stripe ``k``.

    Derived from the physical side (rows of stripe_len on each device) rather
    than from the logical side ``map`` computes; None for unused stripes.
    """
    prof = chunk.profile
    n = chunk.num_stripes
    row, within = divmod(p, SL)
    if prof in (Profile.SINGLE,):
        return (chunk.logical + p, 1, "data") if k == 0 else None
    if prof in (Profile.DUP, Profile.RAID1, Profile.RAID1C3, Profile.RAID1C4):
        return chunk.logical + p, k + 1, "data"
    if prof is Profile.RAID0:
        return chunk.logical + (row * n + k) * SL + within, 1, "data"
    if prof is Profile.RAID10:
        factor = n // chunk.sub_stripes
        col, copy = divmod(k, chunk.sub_stripes)
        return chunk.logical + (row * factor + col) * SL + within, copy + 1, "data"
    nparity = 2 if prof is Profile.RAID6 else 1
    data = n - nparity
    col = (k - row) % n  # position of this device in the rotated row
    if col < data:
        return chunk.logical + (row * data + col) * SL + within, 1, "data"
    return None if col >= n else (-1 - row, 2 + col - data, "PQ"[col - data])


def every_sector(chunk: Chunk, m: ChunkMap, parity: bool) -> list[PhysicalRange]:
    out = []
    for logical in range(chunk.logical, chunk.end, SECTOR):
        out.extend(m.map(logical, SECTOR, parity=parity))
    return out


@PROPS
@given(valid_chunks())
def test_property_every_sector_matches_inverse(chunk):
    """Mapping every sector is a bijection onto the stripes, and agrees with the inverse model."""
    m = ChunkMap([chunk])
    assert validate_chunk(chunk, sectorsize=SECTOR) == []
    prof = chunk.profile
    ranges = every_sector(chunk, m, parity=True)
    data_copies = 1 if prof in (Profile.RAID5, Profile.RAID6) else chunk.num_copies
    nsec = chunk.length // SECTOR
    assert sum(r.role == "data" for r in ranges) == nsec * data_copies
    # each mirror of each sector: one piece of exactly one sector
    seen_data: set[tuple[int, int]] = set()
    seen_parity: set[tuple[int, int]] = set()
    covered: dict[int, set[int]] = {}
    for r in ranges:
        assert r.length == SECTOR
        stripe = chunk.stripes[r.stripe_index]
        assert r.devid == stripe.devid
        rel = r.physical - stripe.offset
        assert 0 <= rel < chunk.device_length
        expected = inverse(chunk, r.stripe_index, rel)
        assert expected is not None
        if r.role == "data":
            assert expected == (r.logical, r.mirror, "data")
            key = (r.devid, r.physical)
            assert key not in seen_data, "two logical sectors share a physical sector"
            seen_data.add(key)
        else:
            assert (expected[1], expected[2]) == (r.mirror, r.role)
            # parity at the same in-stripe offset as its data, in the same row
            assert rel % SL == (r.logical - chunk.logical) % SL
            assert rel // SL == (r.logical - chunk.logical) // SL // chunk.data_stripes
            seen_parity.add((r.devid, r.physical))
        covered.setdefault(r.stripe_index, set()).add(rel)
    assert not seen_data & seen_parity, "parity collides with data"
    # every used stripe is covered exactly (data + parity), and nothing else
    used = [0] if prof is Profile.SINGLE else range(chunk.num_stripes)
    assert sorted(covered) == list(used)
    for k in used:
        assert covered[k] == set(range(0, chunk.device_length, SECTOR))
    # mirror 1 holds every logical byte once
    assert sum(r.length for r in ranges if r.mirror == 1 and r.role == "data") == chunk.length


@PROPS
@given(valid_chunks(), st.data())
def test_property_inverse_roundtrip(chunk, data):
    """Physical -> logical (inverse model) -> map() returns that physical byte."""
    m = ChunkMap([chunk])
    k = data.draw(st.integers(0, chunk.num_stripes - 1))
    p = data.draw(st.integers(0, chunk.device_length - 1))
    expected = inverse(chunk, k, p)
    if expected is None:
        assert chunk.profile is Profile.SINGLE and k > 0
        return
    logical, mirror, role = expected
    stripe = chunk.stripes[k]
    if role == "data":
        got = [r for r in m.map(logical, 1) if r.mirror == mirror]
        assert got == [PR(logical, 1, mirror, stripe.devid, stripe.offset + p, k)]
    else:
        # some data byte of that row at the same in-stripe offset is protected by it
        row, within = divmod(p, SL)
        col = data.draw(st.integers(0, chunk.data_stripes - 1))
        lg = chunk.logical + (row * chunk.data_stripes + col) * SL + within
        got = [r for r in m.map(lg, 1, parity=True) if r.role == role]
        assert got == [PR(lg, 1, mirror, stripe.devid, stripe.offset + p, k, role)]


def normalize(ranges: list[PhysicalRange]) -> list[tuple]:
    """Merge pieces that continue each other logically and physically."""
    out: list[list] = []
    for r in sorted(ranges, key=lambda r: (r.mirror, r.role, r.logical)):
        if out:
            last = out[-1]
            if (last[0], last[1], last[2], last[3]) == (r.mirror, r.role, r.devid, r.stripe_index) and \
                    last[4] + last[6] == r.logical and last[5] + last[6] == r.physical:
                last[6] += r.length
                continue
        out.append([r.mirror, r.role, r.devid, r.stripe_index, r.logical, r.physical, r.length])
    return [tuple(x) for x in out]


@PROPS
@given(valid_chunks(max_rows=6), st.data(), st.booleans())
def test_property_range_equals_concatenated_pieces(chunk, data, parity):
    m = ChunkMap([chunk])
    a = data.draw(st.integers(chunk.logical, chunk.end - 1))
    c = data.draw(st.integers(a + 1, chunk.end))
    b = data.draw(st.integers(a, c))
    whole = m.map(a, c - a, parity=parity)
    parts = m.map(a, b - a, parity=parity) + m.map(b, c - b, parity=parity)
    assert normalize(whole) == normalize(parts)
    # ordered by logical then mirror; pieces never cross a stripe for striped profiles
    assert whole == sorted(whole, key=lambda r: (r.logical, r.mirror))
    assert sum(r.length for r in whole if r.mirror == 1) == c - a
    if chunk.profile in (Profile.RAID0, Profile.RAID10, Profile.RAID5, Profile.RAID6):
        for r in whole:
            off = r.logical - chunk.logical
            assert off // SL == (off + r.length - 1) // SL
    # byte-exact agreement with the single-byte mapping at both ends of every piece
    for r in whole:
        for delta in {0, r.length - 1}:
            one = [x for x in m.map(r.logical + delta, 1, parity=parity)
                   if (x.mirror, x.role) == (r.mirror, r.role)]
            assert [(x.devid, x.physical) for x in one] == [(r.devid, r.physical + delta)]


@PROPS
@given(valid_chunks(), st.data())
def test_property_mirrors_are_distinct_copies(chunk, data):
    m = ChunkMap([chunk])
    a = data.draw(st.integers(chunk.logical, chunk.end - 1))
    n = data.draw(st.integers(1, chunk.end - a))
    got = m.map(a, n)
    by_logical: dict[int, list[PhysicalRange]] = {}
    for r in got:
        by_logical.setdefault(r.logical, []).append(r)
    copies = 1 if chunk.profile in (Profile.RAID5, Profile.RAID6) else chunk.num_copies
    assert m.num_copies(a) == chunk.num_copies
    for pieces in by_logical.values():
        assert [r.mirror for r in pieces] == list(range(1, copies + 1))
        assert len({r.length for r in pieces}) == 1
        if chunk.profile is Profile.DUP:
            x, y = pieces
            assert x.devid == y.devid
            assert x.physical + x.length <= y.physical or y.physical + y.length <= x.physical
        else:
            assert len({r.devid for r in pieces}) == len(pieces)


@FEW
@given(st.lists(valid_chunks(max_rows=2), min_size=1, max_size=5), st.data())
def test_property_several_chunks(chunks, data):
    """Chunks laid end to end: a range spanning them maps as the union of per-chunk maps."""
    placed = []
    pos = data.draw(st.integers(0, 1 << 10)) * SECTOR
    for c in chunks:
        placed.append(Chunk(**{**_fields(c), "logical": pos}))
        pos += c.length
    shuffled = data.draw(st.permutations(placed))
    m = ChunkMap(shuffled)
    assert list(m) == placed
    start, end = placed[0].logical, placed[-1].end
    a = data.draw(st.integers(start, end - 1))
    b = data.draw(st.integers(a + 1, end))
    whole = m.map(a, b - a, parity=True)
    expect = []
    for c in placed:
        lo, hi = max(a, c.logical), min(b, c.end)
        if lo < hi:
            expect += ChunkMap([c]).map(lo, hi - lo, parity=True)
    assert whole == expect
    for c in placed:
        assert m.lookup(c.logical) is c and m.lookup(c.end - 1) is c
    with pytest.raises(ReadError):
        m.map(a, end - a + 1)


# ---------------------------------------------------------------------------
# robustness: arbitrary field values never crash with anything but BtrfsScanError


@st.composite
def arbitrary_chunks(draw) -> Chunk:
    n = draw(st.integers(0, 6))
    stripes = tuple(S(draw(st.integers(0, 4)), draw(st.integers(0, 1 << 30))) for _ in range(n))
    return Chunk(
        logical=draw(st.sampled_from([0, 4096, 1 << 20, (1 << 64) - 4096, 12345])),
        length=draw(st.sampled_from([0, 1, 4096, SL, 3 * SL, 5 * SL + 512, 1 << 22])),
        owner=2,
        stripe_len=draw(st.sampled_from([0, 1, 3, 4096, SL, 1 << 20])),
        type=draw(st.integers(0, (1 << 13) - 1) | st.sampled_from([1 << 63, DATA | 1 << 40])),
        io_align=SL,
        io_width=SL,
        sector_size=draw(st.sampled_from([0, 512, SECTOR])),
        num_stripes=draw(st.sampled_from([n, n, n, 0, n + 1])),
        sub_stripes=draw(st.integers(0, 4)),
        stripes=stripes,
    )


@PROPS
@given(arbitrary_chunks(), st.sampled_from([0, 512, SECTOR]))
def test_property_arbitrary_fields_never_crash(chunk, sectorsize):
    problems = validate_chunk(chunk, sectorsize=sectorsize, device_sizes={1: 1 << 30, 2: 1 << 20})
    assert all(f"0x{chunk.logical:x}" in p for p in problems)
    # the properties never raise ZeroDivisionError
    chunk.data_stripes, chunk.device_length, chunk.num_copies, chunk.type_names, chunk.end  # noqa: B018
    m = ChunkMap()
    try:
        m.add(chunk)
    except BtrfsScanError:
        assert problems, "add() refused a chunk validate_chunk found valid"
        return
    # a window at the start and the end maps completely
    for lo in (chunk.logical, max(chunk.logical, chunk.end - 3 * max(chunk.stripe_len, 1))):
        hi = min(chunk.end, lo + 3 * max(chunk.stripe_len, 1))
        got = m.map(lo, hi - lo, parity=True)
        assert sum(r.length for r in got if r.mirror == 1 and r.role == "data") == hi - lo
        for r in got:
            assert 0 <= r.stripe_index < chunk.num_stripes
            assert r.devid == chunk.stripes[r.stripe_index].devid


# ---------------------------------------------------------------------------
# kernel-made fixtures: btrfs-map-logical output (skipped until they exist)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "volumes"
FIXTURE_DIRS = sorted(p.parent.parent for p in FIXTURES.glob("*/expected/map-logical.json")
                      if (p.parent / "dump-tree-chunk.txt").exists())

_KEY_RE = re.compile(r"^\s*item \d+ key \(FIRST_CHUNK_TREE CHUNK_ITEM (\d+)\)")
_HEAD_RE = re.compile(r"^\s*length (\d+) owner (\d+) stripe_len (\d+) type (\S+)\s*$")
_IO_RE = re.compile(r"^\s*io_align (\d+) io_width (\d+) sector_size (\d+)\s*$")
_NUM_RE = re.compile(r"^\s*num_stripes (\d+) sub_stripes (\d+)\s*$")
_STRIPE_RE = re.compile(r"^\s*stripe (\d+) devid (\d+) offset (\d+)\s*$")
_UUID_RE = re.compile(r"^\s*dev_uuid ([0-9a-f-]{36})\s*$")


def parse_type(text: str) -> int:
    """``DATA|METADATA|RAID1`` as printed by btrfs-progs' bg_flags_to_str -> type bits."""
    value = 0
    for name in text.split("|"):
        if name.upper() == "SINGLE":
            continue
        value |= int(BlockGroupFlag[name])
    return value


def parse_chunk_tree_dump(text: str) -> list[Chunk]:
    """Chunks of ``btrfs inspect-internal dump-tree -t chunk`` output."""
    chunks: list[Chunk] = []
    cur: dict | None = None

    def finish():
        if cur is not None:
            assert len(cur["stripes"]) == cur["num_stripes"], cur
            chunks.append(Chunk(stripes=tuple(cur.pop("stripes")), **cur))

    for line in text.splitlines():
        if m := _KEY_RE.match(line):
            finish()
            cur = {"logical": int(m[1]), "stripes": []}
        elif cur is None:
            continue
        elif m := _HEAD_RE.match(line):
            cur.update(length=int(m[1]), owner=int(m[2]), stripe_len=int(m[3]), type=parse_type(m[4]))
        elif m := _IO_RE.match(line):
            cur.update(io_align=int(m[1]), io_width=int(m[2]), sector_size=int(m[3]))
        elif m := _NUM_RE.match(line):
            cur.update(num_stripes=int(m[1]), sub_stripes=int(m[2]))
        elif m := _STRIPE_RE.match(line):
            assert int(m[1]) == len(cur["stripes"])
            cur["stripes"].append([int(m[2]), int(m[3]), b""])
        elif m := _UUID_RE.match(line):
            cur["stripes"][-1][2] = bytes.fromhex(m[1].replace("-", ""))
        elif line.lstrip().startswith(("item ", "leaf ", "node ")):
            finish()
            cur = None
    finish()
    for i, c in enumerate(chunks):
        chunks[i] = Chunk(**{**_fields(c), "stripes": tuple(Stripe(*s) for s in c.stripes)})
    return chunks


def test_parse_chunk_tree_dump_sample():
    text = """chunk tree
leaf 22036480 items 4 free space 15781 generation 6 owner CHUNK_TREE
\titem 0 key (DEV_ITEMS DEV_ITEM 1) itemoff 16185 itemsize 98
\t\tdevid 1 total_bytes 134217728 bytes_used 8388608
\titem 1 key (FIRST_CHUNK_TREE CHUNK_ITEM 22020096) itemoff 16105 itemsize 112
\t\tlength 8388608 owner 2 stripe_len 65536 type SYSTEM|DUP
\t\tio_align 65536 io_width 65536 sector_size 4096
\t\tnum_stripes 2 sub_stripes 1
\t\t\tstripe 0 devid 1 offset 22020096
\t\t\tdev_uuid 1c1c2d4b-0c5a-4a8e-9e7d-2f6a1b0c9d8e
\t\t\tstripe 1 devid 1 offset 30408704
\t\t\tdev_uuid 1c1c2d4b-0c5a-4a8e-9e7d-2f6a1b0c9d8e
\titem 2 key (FIRST_CHUNK_TREE CHUNK_ITEM 38797312) itemoff 16025 itemsize 80
\t\tlength 8388608 owner 2 stripe_len 65536 type DATA|METADATA
\t\tio_align 65536 io_width 65536 sector_size 4096
\t\tnum_stripes 1 sub_stripes 1
\t\t\tstripe 0 devid 1 offset 38797312
\t\t\tdev_uuid 1c1c2d4b-0c5a-4a8e-9e7d-2f6a1b0c9d8e
"""
    a, b = parse_chunk_tree_dump(text)
    assert a.logical == 22020096 and a.type == SYSTEM | int(BlockGroupFlag.DUP)
    assert a.stripes[1] == Stripe(1, 30408704, bytes.fromhex("1c1c2d4b0c5a4a8e9e7d2f6a1b0c9d8e"))
    assert b.type == DATA | META and b.profile is Profile.SINGLE and b.num_stripes == 1


def _superblock_facts(expected: Path) -> tuple[int, dict[int, int]]:
    sectorsize, sizes = SECTOR, {}
    for path in sorted(expected.glob("dump-super-dev*.txt")):
        values: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if line.startswith("superblock:") and values:
                break
            parts = line.split(None, 1)
            if len(parts) == 2 and not line[:1].isspace():
                values.setdefault(parts[0], parts[1].strip())
        if "sectorsize" in values:
            sectorsize = int(values["sectorsize"])
        if "dev_item.devid" in values and "dev_item.total_bytes" in values:
            sizes[int(values["dev_item.devid"])] = int(values["dev_item.total_bytes"])
    return sectorsize, sizes


@pytest.mark.skipif(not FIXTURE_DIRS, reason="no kernel-made volume fixtures yet (tests/fixtures/volumes)")
@pytest.mark.parametrize("fixture", FIXTURE_DIRS, ids=[p.name for p in FIXTURE_DIRS])
def test_kernel_fixture_matches_btrfs_map_logical(fixture):
    expected = fixture / "expected"
    chunks = parse_chunk_tree_dump((expected / "dump-tree-chunk.txt").read_text())
    assert chunks
    sectorsize, sizes = _superblock_facts(expected)
    m = ChunkMap()
    for c in chunks:
        assert validate_chunk(c, sectorsize=sectorsize, device_sizes=sizes or None) == [], c
        m.add(c)
    doc = json.loads((expected / "map-logical.json").read_text())
    checked = 0
    for sample in doc["samples"]:
        chunk = m.lookup(sample["logical"])
        assert chunk.logical == sample["chunk"]["logical"]
        assert m.num_copies(sample["logical"]) == sample["num_copies"]
        lines = {(x["mirror"], x["logical"], x["physical"], x["devid"])
                 for copy in sample["copies"] for x in copy["mappings"]}
        for mirror, logical, physical, devid in sorted(lines):
            role = "data"
            if chunk.profile in (Profile.RAID5, Profile.RAID6) and mirror > 1:
                role = "PQ"[mirror - 2]
            got = [(r.devid, r.physical) for r in m.map(logical, 1, parity=True)
                   if (r.mirror, r.role) == (mirror, role)]
            assert got == [(devid, physical)], (fixture.name, sample["logical"], mirror, logical)
            checked += 1
        if lines:
            assert {x[0] for x in lines} == set(range(1, sample["num_copies"] + 1))
    assert checked or not any(s["status"] == "ok" for s in doc["samples"])


_DEV_EXTENT_KEY_RE = re.compile(r"^\s*item \d+ key \((\d+) DEV_EXTENT (\d+)\)")
_DEV_EXTENT_RE = re.compile(r"^\s*chunk_objectid \d+ chunk_offset (\d+) length (\d+)\s*$")


def parse_dev_extents(text: str) -> list[tuple[int, int, int, int]]:
    """``(devid, physical, chunk_offset, length)`` of ``dump-tree -t dev`` output."""
    out, key = [], None
    for line in text.splitlines():
        if m := _DEV_EXTENT_KEY_RE.match(line):
            key = (int(m[1]), int(m[2]))
        elif key and (m := _DEV_EXTENT_RE.match(line)):
            out.append((*key, int(m[1]), int(m[2])))
            key = None
    return out


@pytest.mark.skipif(not FIXTURE_DIRS, reason="no kernel-made volume fixtures yet (tests/fixtures/volumes)")
@pytest.mark.parametrize("fixture", FIXTURE_DIRS, ids=[p.name for p in FIXTURE_DIRS])
def test_kernel_fixture_chunks_cover_dev_extents(fixture):
    """Mapping every byte of every chunk (with parity) fills exactly the kernel's dev extents."""
    expected = fixture / "expected"
    m = ChunkMap(parse_chunk_tree_dump((expected / "dump-tree-chunk.txt").read_text()))
    extents = parse_dev_extents((expected / "dump-tree-dev.txt").read_text())
    assert extents
    by_chunk: dict[int, set[tuple[int, int, int]]] = {}
    for devid, physical, chunk_offset, length in extents:
        by_chunk.setdefault(chunk_offset, set()).add((devid, physical, length))
    assert sorted(by_chunk) == [c.logical for c in m]
    for chunk in m:
        assert by_chunk[chunk.logical] == {(s.devid, s.offset, chunk.device_length) for s in chunk.stripes}
        covered: dict[int, list[tuple[int, int]]] = {}
        for r in m.map(chunk.logical, chunk.length, parity=True):
            covered.setdefault(r.stripe_index, []).append((r.physical, r.physical_end))
        for k, stripe in enumerate(chunk.stripes):
            spans = sorted(set(covered[k]))
            pos = stripe.offset
            for lo, hi in spans:  # contiguous, no gaps (P/Q pieces of a row may repeat)
                assert lo <= pos, (chunk.logical, k, hex(lo), hex(pos))
                pos = max(pos, hi)
            assert spans[0][0] == stripe.offset and pos == stripe.offset + chunk.device_length
