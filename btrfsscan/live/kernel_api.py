"""The Linux calls ``live`` makes on a mounted filesystem, through ctypes and ioctl.

None of them reads file data or changes the page cache: ``mincore`` over a
read-only mapping that is never touched, ``cachestat`` (Linux 6.5+), FIEMAP
without ``FIEMAP_FLAG_SYNC`` (which would start writeback), ``statx``, the
btrfs ioctls ``FS_INFO``, ``INO_LOOKUP``, ``DEV_INFO``, ``SPACE_INFO`` and
``GET_FEATURES``, and the filesystem label. Where the kernel lacks a call,
the function says so by returning None and the caller takes the slower or
coarser way. Struct layouts are those of the x86_64/aarch64 uapi headers.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from dataclasses import dataclass

import numpy as np

from ..format.constants import FiemapFlag, StatxMask

_libc = ctypes.CDLL(None, use_errno=True)

_libc.syscall.restype = ctypes.c_long
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_libc.fstatfs.argtypes = (ctypes.c_int, ctypes.c_void_p)

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_PROT_READ = 0x1
_MAP_SHARED = 0x1
_MAP_FAILED = ctypes.c_void_p(-1).value
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_STATX_DONT_SYNC = 0x4000
_AT_EMPTY_PATH = 0x1000


def _oserror(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


# --- statx ---------------------------------------------------------------------------

_STATX_SIZE = 256
_statx = getattr(_libc, "statx", None)
if _statx is not None:
    _statx.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)


@dataclass(frozen=True)
class StatxFacts:
    """What statx returned; ``mnt_id``/``subvol`` None when the kernel did not fill them."""

    ino: int
    dev: int
    mnt_id: int | None
    subvol: int | None


def statx_ids(dir_fd: int, name: bytes) -> StatxFacts | None:
    """Inode, device, mount id and btrfs subvolume id of ``name`` below ``dir_fd`` (None: no statx).

    An empty ``name`` asks about ``dir_fd`` itself. STATX_MNT_ID needs Linux
    5.8, STATX_SUBVOL Linux 6.10 on btrfs.
    """
    if _statx is None:
        return None
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    mask = StatxMask.INO | StatxMask.MNT_ID | StatxMask.SUBVOL
    flags = _AT_SYMLINK_NOFOLLOW | _AT_STATX_DONT_SYNC | (_AT_EMPTY_PATH if not name else 0)
    if _statx(dir_fd, name, flags, int(mask), buf) != 0:
        if ctypes.get_errno() == errno.ENOSYS:
            return None
        raise _oserror("statx")
    got = struct.unpack_from("=I", buf, 0)[0]
    ino = struct.unpack_from("=Q", buf, 32)[0]
    dev_major, dev_minor = struct.unpack_from("=II", buf, 136)
    mnt_id = struct.unpack_from("=Q", buf, 144)[0]
    subvol = struct.unpack_from("=Q", buf, 160)[0]
    return StatxFacts(
        ino=ino,
        dev=os.makedev(dev_major, dev_minor),
        mnt_id=mnt_id if got & StatxMask.MNT_ID else None,
        subvol=subvol if got & StatxMask.SUBVOL else None,
    )


# --- statfs --------------------------------------------------------------------------


@dataclass(frozen=True)
class StatfsFacts:
    f_type: int
    f_bsize: int
    f_blocks: int
    f_bfree: int
    f_fsid: bytes


def fstatfs(fd: int) -> StatfsFacts:
    """``f_type``, ``f_bsize``, ``f_blocks``, ``f_bfree`` and ``f_fsid`` of the filesystem holding ``fd``
    (64-bit struct statfs)."""
    buf = ctypes.create_string_buffer(120)
    if _libc.fstatfs(fd, buf) != 0:
        raise _oserror("fstatfs")
    f_type, f_bsize, f_blocks, f_bfree = struct.unpack_from("=qqQQ", buf, 0)
    return StatfsFacts(f_type & 0xFFFFFFFF, f_bsize, f_blocks, f_bfree, bytes(buf.raw[56:64]))


# --- cachestat -----------------------------------------------------------------------

_NR_CACHESTAT = 451  # the same number on every architecture (added after the syscall tables were unified)
_cachestat_works = True


def cachestat(fd: int, length: int, offset: int = 0) -> int | None:
    """Pages of ``[offset, offset + length)`` of ``fd`` in the page cache (``length`` 0: to EOF; None: the
    kernel has no cachestat)."""
    global _cachestat_works
    if not _cachestat_works:
        return None
    rng = (ctypes.c_uint64 * 2)(offset, length)
    out = (ctypes.c_uint64 * 5)()
    if _libc.syscall(ctypes.c_long(_NR_CACHESTAT), ctypes.c_int(fd), rng, out, ctypes.c_uint(0)) != 0:
        if ctypes.get_errno() in (errno.ENOSYS, errno.EPERM):  # EPERM: a seccomp filter that denies it
            _cachestat_works = False
            return None
        raise _oserror("cachestat")
    return int(out[0])


# --- mincore over a read-only mapping --------------------------------------------------

#: Bytes mapped per mincore call: bounds the residency vector (one byte per page).
WINDOW = 1 << 30
_vec = ctypes.create_string_buffer(WINDOW // PAGE_SIZE)


def resident_runs(fd: int, size: int) -> list[tuple[int, int]]:
    """Resident pages of the first ``size`` bytes of ``fd`` as ``(first page, count)`` runs.

    A window at a time: ``cachestat`` first, so a window with nothing cached
    (most of a large sparse or cold file) costs one call and a fully cached
    one no ``mincore``; otherwise the window is mapped read-only and never
    touched, so no page is faulted in (the kernel's mapping readahead only
    runs on a fault).
    """
    runs: list[tuple[int, int]] = []
    npages = -(-size // PAGE_SIZE)
    for first in range(0, npages, WINDOW // PAGE_SIZE):
        count = min(npages - first, WINDOW // PAGE_SIZE)
        length = count * PAGE_SIZE
        cached = cachestat(fd, length, first * PAGE_SIZE)
        if cached == 0:
            continue
        if cached == count:
            _add_run(runs, first, count)
            continue
        addr = _libc.mmap(None, length, _PROT_READ, _MAP_SHARED, fd, first * PAGE_SIZE)
        if addr is None or addr == _MAP_FAILED:
            raise _oserror("mmap")
        try:
            if _libc.mincore(addr, length, _vec) != 0:
                raise _oserror("mincore")
        finally:
            _libc.munmap(addr, length)
        _append_runs(runs, first, count)
    return runs


def _append_runs(runs: list[tuple[int, int]], first: int, count: int) -> None:
    """Runs of set low bits in ``_vec[:count]`` (page ``first`` onwards), merged with the previous window's."""
    bits = np.frombuffer(_vec, np.uint8, count) & 1
    edges = np.flatnonzero(np.diff(bits, prepend=np.uint8(0), append=np.uint8(0)))
    for start, end in zip(edges[0::2].tolist(), edges[1::2].tolist()):
        _add_run(runs, first + start, end - start)


def _add_run(runs: list[tuple[int, int]], first: int, count: int) -> None:
    """``count`` resident pages from ``first``, merged with the run before when they touch."""
    if runs and runs[-1][0] + runs[-1][1] == first:
        runs[-1] = (runs[-1][0], runs[-1][1] + count)
    else:
        runs.append((first, count))


# --- FIEMAP ----------------------------------------------------------------------------

FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap)
_FIEMAP_HEAD = struct.Struct("=QQIIII")  # fm_start fm_length fm_flags fm_mapped_extents fm_extent_count fm_reserved
_FIEMAP_EXTENT = struct.Struct("=QQQ16xI12x")  # fe_logical fe_physical fe_length fe_reserved64[2] fe_flags fe_reserved[3]
_FIEMAP_BATCH = 64
_fiemap_buf = bytearray(_FIEMAP_HEAD.size + _FIEMAP_BATCH * _FIEMAP_EXTENT.size)
_U64_MAX = (1 << 64) - 1


def fiemap(fd: int) -> list[tuple[int, int, int, int]]:
    """Every extent of ``fd`` as ``(fe_logical, fe_physical, fe_length, fe_flags)`` (no sync: delalloc stays delalloc).

    Asked again from the end of the last extent until one carries
    ``FIEMAP_EXTENT_LAST`` or none is returned; a reply that does not move
    forward ends the loop.
    """
    out: list[tuple[int, int, int, int]] = []
    start = 0
    while True:
        _FIEMAP_HEAD.pack_into(_fiemap_buf, 0, start, _U64_MAX - start, 0, 0, _FIEMAP_BATCH, 0)
        fcntl.ioctl(fd, FS_IOC_FIEMAP, _fiemap_buf, True)
        mapped = _FIEMAP_HEAD.unpack_from(_fiemap_buf, 0)[3]
        if mapped == 0:
            return out
        for i in range(min(mapped, _FIEMAP_BATCH)):
            out.append(_FIEMAP_EXTENT.unpack_from(_fiemap_buf, _FIEMAP_HEAD.size + i * _FIEMAP_EXTENT.size))
        logical, _, length, flags = out[-1]
        if flags & FiemapFlag.LAST or logical + length <= start:
            return out
        start = logical + length


# --- btrfs ioctls ----------------------------------------------------------------------

BTRFS_IOC_FS_INFO = 0x8400941F  # _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args), 1024 bytes
BTRFS_IOC_INO_LOOKUP = 0xD0009412  # _IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args), 4096 bytes
_BTRFS_FS_INFO_FLAG_GENERATION = 1 << 1


@dataclass(frozen=True)
class BtrfsInfo:
    """From BTRFS_IOC_FS_INFO; ``generation`` None on kernels before 5.10."""

    fsid: bytes
    generation: int | None
    nodesize: int
    sectorsize: int
    num_devices: int
    max_id: int  # the highest devid


def btrfs_fs_info(fd: int) -> BtrfsInfo:
    buf = bytearray(1024)
    struct.pack_into("=Q", buf, 48, _BTRFS_FS_INFO_FLAG_GENERATION)  # flags in: ask for the generation
    fcntl.ioctl(fd, BTRFS_IOC_FS_INFO, buf, True)
    max_id, num_devices = struct.unpack_from("=QQ", buf, 0)
    nodesize, sectorsize = struct.unpack_from("=II", buf, 32)
    flags, generation = struct.unpack_from("=QQ", buf, 48)
    return BtrfsInfo(bytes(buf[16:32]), generation if flags & _BTRFS_FS_INFO_FLAG_GENERATION else None,
                     nodesize, sectorsize, num_devices, max_id)


def btrfs_ino_lookup(fd: int, objectid: int) -> tuple[int, bytes]:
    """(subvolume id, path of directory ``objectid`` inside that subvolume) for the subvolume of ``fd``.

    Needs CAP_SYS_ADMIN. The path comes back with a trailing ``/`` unless empty.
    """
    buf = bytearray(4096)
    struct.pack_into("=QQ", buf, 0, 0, objectid)
    fcntl.ioctl(fd, BTRFS_IOC_INO_LOOKUP, buf, True)
    treeid = struct.unpack_from("=Q", buf, 0)[0]
    name = bytes(buf[16:]).split(b"\0", 1)[0]
    return treeid, name.rstrip(b"/")


# --- filesystem uuid elsewhere ------------------------------------------------------------

FS_IOC_GETFSUUID = 0x80111500  # _IOR(0x15, 0, struct fsuuid2), 17 bytes (Linux 6.5+)
XFS_IOC_FSGEOMETRY = 0x8100587E  # _IOR('X', 126, struct xfs_fsop_geom), 256 bytes


def fs_uuid(fd: int) -> bytes | None:
    """The superblock uuid the filesystem exports (``FS_IOC_GETFSUUID``, else XFS geometry), or None."""
    buf = bytearray(17)
    try:
        fcntl.ioctl(fd, FS_IOC_GETFSUUID, buf, True)
        if buf[0]:
            return bytes(buf[1:1 + buf[0]])
    except OSError:
        pass
    geom = bytearray(256)
    try:
        fcntl.ioctl(fd, XFS_IOC_FSGEOMETRY, geom, True)
    except OSError:
        return None
    return bytes(geom[64:80])


# --- devices, space and labels -------------------------------------------------------------

BTRFS_IOC_DEV_INFO = 0xD000941E  # _IOWR(0x94, 30, struct btrfs_ioctl_dev_info_args), 4096 bytes
BTRFS_IOC_SPACE_INFO = 0xC0109414  # _IOWR(0x94, 20, struct btrfs_ioctl_space_args), 16 bytes + the slots
BTRFS_IOC_GET_FEATURES = 0x80189439  # _IOR(0x94, 57, struct btrfs_ioctl_feature_flags), 24 bytes
FS_IOC_GETFSLABEL = 0x81009431  # _IOR(0x94, 49, char[256]): BTRFS_IOC_GET_FSLABEL, generic since Linux 4.18
_SPACE_SLOT = struct.Struct("=QQQ")  # flags total_bytes used_bytes
_DEV_PATH_AT = 3072


@dataclass(frozen=True)
class BtrfsDevice:
    """One device from BTRFS_IOC_DEV_INFO (``path`` as the kernel opened it)."""

    devid: int
    uuid: bytes
    bytes_used: int
    total_bytes: int
    path: bytes


def btrfs_dev_info(fd: int, devid: int) -> BtrfsDevice | None:
    """Device ``devid`` of the filesystem of ``fd`` (None: no such devid, ENODEV)."""
    buf = bytearray(4096)
    struct.pack_into("=Q", buf, 0, devid)
    try:
        fcntl.ioctl(fd, BTRFS_IOC_DEV_INFO, buf, True)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    got, = struct.unpack_from("=Q", buf, 0)
    bytes_used, total_bytes = struct.unpack_from("=QQ", buf, 24)
    return BtrfsDevice(got, bytes(buf[8:24]), bytes_used, total_bytes, bytes(buf[_DEV_PATH_AT:]).split(b"\0", 1)[0])


def btrfs_space_info(fd: int) -> list[tuple[int, int, int]]:
    """``(flags, total_bytes, used_bytes)`` of every space (block group type and profile, and the global
    reserve), as ``btrfs filesystem df`` lists them: asked once for the count, then for the slots."""
    head = bytearray(16)
    fcntl.ioctl(fd, BTRFS_IOC_SPACE_INFO, head, True)
    slots = struct.unpack_from("=Q", head, 8)[0]
    buf = bytearray(16 + slots * _SPACE_SLOT.size)
    struct.pack_into("=Q", buf, 0, slots)
    fcntl.ioctl(fd, BTRFS_IOC_SPACE_INFO, buf, True)
    total = min(struct.unpack_from("=Q", buf, 8)[0], slots)
    return [_SPACE_SLOT.unpack_from(buf, 16 + i * _SPACE_SLOT.size) for i in range(total)]


def btrfs_features(fd: int) -> tuple[int, int, int]:
    """The superblock's ``(compat, compat_ro, incompat)`` feature flags."""
    buf = bytearray(24)
    fcntl.ioctl(fd, BTRFS_IOC_GET_FEATURES, buf, True)
    return struct.unpack_from("=QQQ", buf, 0)


def fs_label(fd: int) -> bytes | None:
    """The filesystem label (FS_IOC_GETFSLABEL), or None where the filesystem gives none."""
    buf = bytearray(256)
    try:
        fcntl.ioctl(fd, FS_IOC_GETFSLABEL, buf, True)
    except OSError:
        return None
    return bytes(buf).split(b"\0", 1)[0]
