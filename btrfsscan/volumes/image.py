"""Input files: raw images, block devices and ``.xz`` images, opened read-only.

Every read is addressed by offset and length and bounds-checked, so a short
image is an error that names the device and offset, never a short read passed
on. ``.xz`` images (and an image inside a tar archive, as btrfs-progs ships
some test images) are unpacked once into a sparse temporary file (zero runs
become holes), so no image is ever held in memory.

Each input is also mapped read-only (``mapped``), so the tree layer can
check and parse blocks where the page cache holds them instead of copying
them first. Reading a mapped file past its end kills the process (SIGBUS),
so the mapping is handed out only while the input is exactly as long as
when it was opened (checked before each use); an input that changed size is
read with ``pread`` from then on. The unpacked ``.xz`` file is unlinked and
only this process holds it, so nothing can shrink it.
"""

from __future__ import annotations

import errno
import lzma
import mmap
import os
import stat
import tarfile
import tempfile

from ..errors import BtrfsScanError, DeviceError, ReadError
from .input_probe import HEAD_BYTES, TAR_MAGIC, TAR_MAGIC_OFFSET, XZ_MAGIC, not_xz_problem, refuse_head, \
    refuse_unreadable_kind

_CHUNK = 1 << 20
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # linux/mman.h; not exported by Python 3.11


class RawImage:
    """One image file or block device holding a btrfs device's bytes."""

    def __init__(self, path: str | os.PathLike, *, display: str | None = None) -> None:
        self.path = str(path)
        self.name = display or self.path
        self._tmp: str | None = None
        try:
            source = self._open_source(self.path)
            self.size = os.lseek(source, 0, os.SEEK_END)
        except OSError as exc:
            raise DeviceError(f"cannot open {self.name}: {exc.strerror or exc}") from None
        self._fd = source
        self._map = self._mapping()

    def _open_source(self, path: str) -> int:
        refuse_unreadable_kind(path, self.name)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO swapped in after the stat cannot block
        mode = os.fstat(fd).st_mode
        if stat.S_ISBLK(mode):
            return fd  # a block device: never decompressed
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise DeviceError(f"{self.name} is neither a regular file nor a block device")
        is_xz = os.pread(fd, len(XZ_MAGIC), 0) == XZ_MAGIC
        problem = None if is_xz else not_xz_problem(path, self.name, fd)
        if problem:
            os.close(fd)
            raise DeviceError(problem)
        if is_xz:
            os.close(fd)
            fd = self._unpack(lambda: lzma.open(path), "xz stream")
        if os.pread(fd, len(TAR_MAGIC), TAR_MAGIC_OFFSET) == TAR_MAGIC:
            fd = self._unpack_tar(fd)
        return fd

    def _unpack_tar(self, fd: int) -> int:
        """The one regular file of a tar archive (as btrfs-progs ships some test images), unpacked."""
        try:
            with os.fdopen(fd, "rb") as archive, tarfile.open(fileobj=archive, mode="r:") as tar:
                members = [m for m in tar.getmembers() if m.isreg()]
                if len(members) != 1:
                    raise DeviceError(f"{self.name}: a tar archive holding {len(members)} files; give the image file itself")
                return self._unpack(lambda: tar.extractfile(members[0]), f"tar member {members[0].name}")
        except tarfile.TarError as exc:
            raise DeviceError(f"{self.name}: damaged tar archive: {exc}") from None

    def _unpack(self, opener, what: str) -> int:
        """Copy what ``opener()`` reads into a sparse temporary file and return its fd."""
        handle, tmp = tempfile.mkstemp(prefix="btrfsscan-", suffix=".img")
        self._tmp = tmp
        total = 0
        try:
            with opener() as src:
                head = src.read(HEAD_BYTES)
                if len(head) == HEAD_BYTES:  # a stream of zeros is refused here, not unpacked whole
                    refuse_head(head, self.name, what)
                block = head
                while block:
                    if block.count(0) != len(block):
                        os.pwrite(handle, block, total)
                    total += len(block)
                    block = src.read(_CHUNK)
            os.ftruncate(handle, total)
        except (lzma.LZMAError, tarfile.TarError, EOFError) as exc:
            os.close(handle)
            self._remove_tmp()
            raise DeviceError(f"{self.name}: damaged {what} after {total} bytes: {exc}") from None
        except (OSError, BtrfsScanError):
            os.close(handle)
            self._remove_tmp()
            raise
        os.close(handle)
        fd = os.open(tmp, os.O_RDONLY)
        self._remove_tmp()  # unlinked now; the open fd keeps it alive
        return fd

    def _remove_tmp(self) -> None:
        if self._tmp:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None

    def pread(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``; ReadError past the end."""
        self._check_range(offset, length)
        try:
            data = os.pread(self._fd, length, offset)
        except OSError as exc:
            raise ReadError(f"{self.name}: read error at offset {offset}: {exc.strerror or exc}") from None
        self._check_count(offset, len(data), length)
        return data

    def readinto(self, offset: int, buffer: memoryview) -> None:
        """Fill ``buffer`` (bytes) from ``offset`` with one read and no copy; ReadError as ``pread``."""
        length = buffer.nbytes
        self._check_range(offset, length)
        try:
            count = os.preadv(self._fd, [buffer], offset)
        except OSError as exc:
            raise ReadError(f"{self.name}: read error at offset {offset}: {exc.strerror or exc}") from None
        self._check_count(offset, count, length)

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ReadError(
                f"{self.name}: read of {length} bytes at offset {offset} goes past the end of the device ({self.size} bytes)"
            )

    def _check_count(self, offset: int, count: int, length: int) -> None:
        if count != length:
            raise ReadError(f"{self.name}: short read at offset {offset} ({count} of {length} bytes)")

    def _mapping(self) -> mmap.mmap | None:
        """The whole input mapped read-only, or None (empty, or a file the kernel cannot map)."""
        if self.size == 0:
            return None
        try:
            return mmap.mmap(self._fd, self.size, prot=mmap.PROT_READ)
        except (OSError, ValueError, OverflowError):
            return None

    def mapped(self) -> mmap.mmap | None:
        """The input mapped, to read without a copy, or None: read with ``readinto`` then.

        None once the input is no longer as long as when it was opened (being
        written: a mapped read past its end would be fatal), and once the
        kernel could not populate a range (``populate``). Callers check the
        range first (``size``), read only what ``populate`` mapped, and
        ``release`` it after.
        """
        if self._map is not None:
            try:
                current = os.lseek(self._fd, 0, os.SEEK_END)
            except OSError:
                current = -1
            if current != self.size:
                self._map = None  # not closed here: views of it may still exist; freed with the last one
        return self._map

    def will_need(self, ranges: list[tuple[int, int]]) -> None:
        """Start reading the ``[start, end)`` ranges into the page cache, all at once and in the background
        (POSIX_FADV_WILLNEED), so that pages evicted since they were last read come back in a few large
        requests instead of one small synchronous read each."""
        for start, end in ranges:
            try:
                os.posix_fadvise(self._fd, start, end - start, os.POSIX_FADV_WILLNEED)
            except OSError:
                return

    def populate(self, start: int, end: int) -> bool:
        """Map the pages of ``[start, end)`` in one call (Linux 5.14's MADV_POPULATE_READ) rather than one
        page fault at a time as they are read; whether they are mapped now.

        False where the kernel could not read a page (EFAULT, an I/O error:
        touching it would kill the process with SIGBUS, where ``readinto``
        raises ReadError), and on a kernel without MADV_POPULATE_READ, which
        cannot tell: the mapping is then given up for good and every later
        read goes through ``readinto``.
        """
        if self._map is None:
            return False
        if end <= start:
            return True
        low, high = self._pages(start, end)
        try:
            self._map.madvise(_MADV_POPULATE_READ, low, high - low)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOSYS):  # no MADV_POPULATE_READ: the mapping is unsafe
                self._map = None  # not closed here: views of it may still exist; freed with the last one
            return False
        return True

    def _pages(self, start: int, end: int) -> tuple[int, int]:
        page = mmap.PAGESIZE
        return start // page * page, min(-(-end // page) * page, self.size)

    def release(self, start: int, end: int) -> None:
        """Unmap the pages of ``[start, end)`` read through ``mapped`` (they stay in the page cache), so the
        process's memory does not grow with the metadata read."""
        if self._map is None or end <= start:
            return
        low, high = self._pages(start, end)
        try:
            self._map.madvise(mmap.MADV_DONTNEED, low, high - low)
        except (OSError, ValueError):
            pass

    def fileobj(self):
        """A read-only file object over the (decompressed) bytes."""
        return os.fdopen(os.dup(self._fd), "rb")

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view of it is still alive: freed with it
                pass
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __repr__(self) -> str:
        return f"RawImage({self.name!r}, size={self.size})"

