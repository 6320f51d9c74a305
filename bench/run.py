#!/usr/bin/env python3
"""Benchmark btrfsscan against ``btrfs inspect-internal dump-tree`` and a raw
read of the metadata chunks, on deterministic kernel-made images.

Usage (building an image needs root, loop devices, the btrfs module and
btrfs-progs; timing a cached image needs none of that)::

    python bench/run.py --size medium
    python bench/run.py --size large --repeat 3
    python bench/run.py --series
    python bench/run.py --size medium --series --json results.json
    python bench/run.py --size medium --cache /var/tmp/bench-cache --rebuild

See ``bench/README.md`` for what is measured and the goals.

Images are built once and cached under ``bench/cache/<size>-<recipe key>/``
(git-ignored): ``image.img`` (sparse) plus ``facts.json`` (written last, so an
interrupted build is never mistaken for a complete one).  The recipe key is
``v<RECIPE_VERSION>-<hash>``, the hash covering the recipe parameters *and*
the source of the functions that build the images, so changing the recipe
rebuilds; cache directories of older recipes of the same name are removed.

Timing: every command runs as its own process, wall time measured around
it; peak RSS and CPU time come from ``wait4`` in a tiny launcher (GNU
``time``; see :func:`spawn` for why not from this process); stdout goes to
/dev/null; each command runs once untimed first (warm page cache), then
``--repeat`` times, the commands interleaved.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import itertools
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "fixtures"))

import kernel  # noqa: E402  (tests/fixtures/kernel.py)

# Bump when the build recipe changes in a way the source hash cannot see
# (e.g. a different mkfs.btrfs default you want to force a rebuild for).
RECIPE_VERSION = "1"

K = 1024
M = 1024 * K
G = 1024 * M

FICLONE = 0x40049409        # _IOW(0x94, 9, int)
FICLONERANGE = 0x4020940D   # _IOW(0x94, 13, struct file_clone_range)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

DEFAULT_CACHE = HERE / "cache"
_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# ==========================================================================
# recipes


@dataclass(frozen=True)
class Recipe:
    name: str
    files: int               # planned regular files in @base (clones come on top)
    large_files: int         # of which 64 KiB - 2 MiB
    snapshots: int           # chained snapshots, each with changes
    modified: int            # per snapshot
    added: int               # per snapshot
    deleted: int             # per snapshot
    file_clones: int         # whole-file reflinks (FICLONE) in @base
    range_clones: int        # partial reflinks (FICLONERANGE) in @base
    dir_copies: int          # `cp -a --reflink=always` of package directories
    device_size: int         # sparse image size
    series: tuple[int, ...] = ()  # unchanged read-only snapshot counts


RECIPES = {
    "medium": Recipe("medium", files=20_000, large_files=300, snapshots=3,
                     modified=200, added=150, deleted=100,
                     file_clones=150, range_clones=50, dir_copies=3,
                     device_size=8 * G),
    "large": Recipe("large", files=200_000, large_files=2_000, snapshots=8,
                    modified=200, added=150, deleted=100,
                    file_clones=3_000, range_clones=500, dir_copies=20,
                    device_size=32 * G),
    "series": Recipe("series", files=20_000, large_files=300, snapshots=0,
                     modified=0, added=0, deleted=0,
                     file_clones=150, range_clones=50, dir_copies=3,
                     device_size=8 * G, series=(0, 10, 50, 100)),
}

SYLLABLES = ["ac", "al", "bar", "bin", "cor", "dat", "el", "fon", "gir", "hal",
             "ix", "jo", "kar", "lib", "mo", "net", "ox", "pa", "qu", "rez",
             "sys", "tor", "ul", "vex", "wu", "xa", "yo", "zed"]
WORDS = ["main", "util", "core", "config", "data", "index", "module", "plugin",
         "helper", "common", "base", "local", "types", "cache", "init", "conf",
         "schema", "tool", "test", "locale"]
ETC_DIRS = ["", "ssl/certs", "apt/sources.list.d", "default", "init.d",
            "systemd/system", "profile.d", "security", "cron.d", "ld.so.conf.d",
            "xdg", "pam.d", "sysctl.d", "logrotate.d"]
LIB_SUBDIRS = ["", "", "modules", "plugins", "share", "python3/dist-packages",
               "include", "locale/en", "locale/de", "data/schemas"]
DOC_SUBDIRS = ["", "", "", "examples", "html"]


def small_size(rng: random.Random) -> int:
    """0-16 KiB, most below 4 KiB; about half <= 2 KiB (inline extents with
    the default max_inline=2048)."""
    r = rng.random()
    if r < 0.05:
        return 0
    if r < 0.50:
        return rng.randint(1, 2048)
    if r < 0.80:
        return rng.randint(2049, 4095)
    return rng.randint(4096, 16 * K)


def large_size(rng: random.Random) -> int:
    """64 KiB - 2 MiB, log-uniform."""
    return int(round(2 ** rng.uniform(16, 21)))


@dataclass
class Plan:
    files: dict           # relpath -> (seed, size), in write order (sorted)
    large: list           # relpaths of large files
    packages: list        # package names
    lib_dirs: list        # every usr/lib/<pkg>/... directory


def plan_tree(recipe: Recipe) -> Plan:
    """The container-like tree of @base: etc/, usr/bin, usr/lib/<pkg>/...,
    usr/share/doc/<pkg>/...; deterministic in the recipe."""
    rng = random.Random(f"btrfsscan-bench:{recipe.name}:tree")
    npkg = max(20, recipe.files // 50)
    packages: list[str] = []
    seen = set()
    while len(packages) < npkg:
        name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))
        if rng.random() < 0.3:
            name = "lib" + name
        if rng.random() < 0.3:
            name += str(rng.randint(0, 9))
        if name not in seen:
            seen.add(name)
            packages.append(name)
    # package popularity: a few packages own many files (pareto weights)
    weights = list(itertools.accumulate(rng.paretovariate(1.2) for _ in packages))
    pkg_lib_dirs = {p: [f"usr/lib/{p}/{s}".rstrip("/")
                        for s in rng.sample(LIB_SUBDIRS, rng.randint(1, 4))]
                    for p in packages}
    pkg_doc_dirs = {p: [f"usr/share/doc/{p}/{s}".rstrip("/")
                        for s in rng.sample(DOC_SUBDIRS, rng.randint(1, 2))]
                    for p in packages}
    etc_dirs = [f"etc/{d}".rstrip("/") for d in ETC_DIRS]
    etc_dirs += [f"etc/{p}" for p in rng.sample(packages, len(packages) // 10)]

    nsmall = recipe.files - recipe.large_files
    areas = (["etc"] * 3 + ["bin"] * 4 + ["lib"] * 55 + ["doc"] * 38)
    entries: list[tuple[str, int]] = []   # (relpath, size)
    serial = 0
    for _ in range(nsmall):
        serial += 1
        area = rng.choice(areas)
        size = small_size(rng)
        word = rng.choice(WORDS)
        if area == "etc":
            path = f"{rng.choice(etc_dirs)}/{word}{serial}.conf"
        elif area == "bin":
            path = f"usr/bin/{rng.choice(packages)}-{word}{serial}"
        elif area == "lib":
            pkg = rng.choices(packages, cum_weights=weights)[0]
            ext = rng.choice([".py", ".so.1", ".dat", ".json", ".mo", ".h", ""])
            path = f"{rng.choice(pkg_lib_dirs[pkg])}/{word}{serial}{ext}"
        else:
            pkg = rng.choices(packages, cum_weights=weights)[0]
            name = rng.choice(["copyright", "changelog", "README", "NEWS", word])
            path = f"{rng.choice(pkg_doc_dirs[pkg])}/{name}{serial}"
        entries.append((path, size))
    large: list[str] = []
    for _ in range(recipe.large_files):
        serial += 1
        pkg = rng.choices(packages, cum_weights=weights)[0]
        if rng.random() < 0.2:
            path = f"usr/bin/{pkg}{serial}"
        else:
            path = f"usr/lib/{pkg}/lib{pkg}-{serial}.so.{rng.randint(0, 9)}"
        entries.append((path, large_size(rng)))
        large.append(path)
    entries.sort()
    files = {path: (f"{recipe.name}/{i}", size) for i, (path, size) in enumerate(entries)}
    lib_dirs = sorted({d for ds in pkg_lib_dirs.values() for d in ds})
    return Plan(files=files, large=sorted(large), packages=packages, lib_dirs=lib_dirs)


def write_file(path: str | os.PathLike, seed: str, size: int) -> None:
    data = kernel.seeded_content(seed, size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def clone_file(src: Path, dst: Path) -> None:
    """Whole-file reflink: the FICLONE ioctl, i.e. ``cp --reflink=always``."""
    with open(src, "rb") as s, open(dst, "wb") as d:
        fcntl.ioctl(d.fileno(), FICLONE, s.fileno())


def clone_range(src: Path, dst: Path, offset: int, length: int) -> None:
    """Partial reflink of ``src[offset:offset+length]`` into a new file."""
    with open(src, "rb") as s, open(dst, "wb") as d:
        arg = struct.pack("=qQQQ", s.fileno(), offset, length, 0)
        fcntl.ioctl(d.fileno(), FICLONERANGE, arg)


def populate_base(recipe: Recipe, plan: Plan, root: Path, timings: dict) -> dict:
    """Write @base; return relpath -> size of every regular file in it."""
    t = time.monotonic()
    dirs = sorted({os.path.dirname(p) for p in plan.files} | set(plan.lib_dirs))
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    files: dict[str, int] = {}
    total = len(plan.files)
    step = max(1000, total // 10)
    for i, (path, (seed, size)) in enumerate(plan.files.items(), 1):
        write_file(root / path, seed, size)
        files[path] = size
        if i % step == 0:
            log(f"  @base: {i:,}/{total:,} files written")
    timings["write_files_s"] = round(time.monotonic() - t, 2)

    t = time.monotonic()
    rng = random.Random(f"btrfsscan-bench:{recipe.name}:clones")
    for i in range(recipe.file_clones):
        src = rng.choice(plan.large)
        pkg = rng.choice(plan.packages)
        dst = f"usr/lib/{pkg}/bundled/{os.path.basename(src)}.{i}"
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        clone_file(root / src, root / dst)
        files[dst] = files[src]
    for i in range(recipe.range_clones):
        src = rng.choice(plan.large)
        nblocks = files[src] // 4096
        if nblocks < 2:
            continue
        off_blocks = rng.randrange(0, nblocks // 2)
        length = rng.randint(1, nblocks - off_blocks) * 4096
        pkg = rng.choice(plan.packages)
        dst = f"usr/lib/{pkg}/bundled/part{i}.bin"
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        clone_range(root / src, root / dst, off_blocks * 4096, length)
        files[dst] = length
    # whole package directories vendored elsewhere: cp -a --reflink=always
    candidates = sorted({"/".join(p.split("/")[:3]) for p in plan.large
                         if p.startswith("usr/lib/")})
    for i, src in enumerate(rng.sample(candidates, min(recipe.dir_copies, len(candidates)))):
        dst = f"opt/vendor{i}/{os.path.basename(src)}"
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        kernel.run(["cp", "-a", "--reflink=always", root / src, root / dst])
        for dirpath, _dirs, names in os.walk(root / dst):
            for n in names:
                rel = os.path.relpath(os.path.join(dirpath, n), root)
                files[rel] = os.path.getsize(root / rel)
    timings["reflinks_s"] = round(time.monotonic() - t, 2)
    return files


def mutate_snapshot(recipe: Recipe, index: int, root: Path, files: dict) -> dict:
    """A few hundred changes in the snapshot ``root``: delete, modify (small
    files rewritten, large files overwritten in place in 4-64 KiB ranges),
    add (mostly small files, some reflinks of large files)."""
    rng = random.Random(f"btrfsscan-bench:{recipe.name}:snap{index}")
    files = dict(files)
    for path in rng.sample(sorted(files), recipe.deleted):
        os.unlink(root / path)
        del files[path]
    for j, path in enumerate(rng.sample(sorted(files), recipe.modified)):
        size = files[path]
        seed = f"{recipe.name}/snap{index}/mod{j}"
        if size >= 64 * K:
            off = rng.randrange(0, size // 4096) * 4096
            length = min(size - off, rng.choice([4, 16, 64]) * K)
            fd = os.open(root / path, os.O_WRONLY)
            try:
                os.pwrite(fd, kernel.seeded_content(seed, length), off)
            finally:
                os.close(fd)
        else:
            size = small_size(rng)
            write_file(root / path, seed, size)
            files[path] = size
    large = sorted(p for p, s in files.items() if s >= 64 * K)
    large_dirs = sorted({os.path.dirname(p) for p in large}) or ["usr/lib"]
    for j in range(recipe.added):
        pkg_dir = rng.choice(large_dirs)
        d = f"{pkg_dir}/layer{index}"
        (root / d).mkdir(parents=True, exist_ok=True)
        if large and j % 10 == 0:
            src = rng.choice(large)
            dst = f"{d}/{os.path.basename(src)}.clone{j}"
            clone_file(root / src, root / dst)
            files[dst] = files[src]
        else:
            dst = f"{d}/added{j}.dat"
            size = large_size(rng) if j % 25 == 1 else small_size(rng)
            write_file(root / dst, f"{recipe.name}/snap{index}/add{j}", size)
            files[dst] = size
    return files


def filesystem_df(mnt: Path) -> dict:
    """``btrfs filesystem df -b``: {"Metadata": {"profile", "total", "used"}, ...}."""
    out = kernel.capture(["btrfs", "filesystem", "df", "-b", mnt])
    res = {}
    for line in out.splitlines():
        m = re.match(r"(\w+), (\w+): total=(\d+), used=(\d+)", line.strip())
        if m:
            res[m[1]] = {"profile": m[2], "total": int(m[3]), "used": int(m[4])}
    return res


def subvolume_list(mnt: Path) -> list[dict]:
    out = kernel.capture(["btrfs", "subvolume", "list", mnt])
    subs = []
    for line in out.splitlines():
        m = re.match(r"ID (\d+) gen \d+ top level \d+ path (.+)", line.strip())
        if m:
            subs.append({"id": int(m[1]), "path": m[2]})
    return subs


# ==========================================================================
# image facts from dump-tree


# every batch handed to these starts with "\n" and ends at a line end
_ITEM_RE = re.compile(rb"\n\titem \d+ key \(\S+ (EXTENT_DATA|EXTENT_ITEM|METADATA_ITEM) ")
_BLOCK_RE = re.compile(rb"\n(?:leaf|node) (\d+) (?:items|level)")
_TYPES = {"inline": b" type 0 (inline)", "regular": b" type 1 (regular)",
          "prealloc": b" type 2 (prealloc)"}
_ITEMS = {"extent_data": b"EXTENT_DATA", "extent_items": b"EXTENT_ITEM",
          "metadata_items": b"METADATA_ITEM"}


def dump_tree_counts(image: Path, tree: str | None = None) -> dict:
    """Stream ``btrfs inspect-internal dump-tree [-t tree] IMAGE`` and count
    EXTENT_DATA items (and their types: the file extent item's
    ``generation N type T (...)`` line), EXTENT_ITEMs (data extents),
    METADATA_ITEMs (allocated tree blocks, skinny metadata), tree blocks
    printed (shared blocks are printed once per tree that reaches them) and
    distinct tree blocks.  Works on whole lines in 4 MiB batches with
    ``bytes.count``, so the multi-GiB output of a large image is cheap."""
    cmd = ["btrfs", "inspect-internal", "dump-tree"]
    if tree is not None:
        cmd += ["-t", tree]
    cmd.append(os.fspath(image))
    counts = dict.fromkeys([*_ITEMS, *_TYPES], 0)
    counts.update(blocks_printed=0, blocks_distinct=0, output_bytes=0)
    distinct: set[bytes] = set()
    rest = b""

    def consume(text: bytes) -> None:
        text = b"\n" + text
        items = _ITEM_RE.findall(text)
        for name, kind in _ITEMS.items():
            counts[name] += items.count(kind)
        for name, needle in _TYPES.items():
            counts[name] += text.count(needle)
        blocks = _BLOCK_RE.findall(text)
        counts["blocks_printed"] += len(blocks)
        distinct.update(blocks)

    with subprocess.Popen(cmd, stdout=subprocess.PIPE, env=kernel.tool_env()) as proc:
        try:  # fewer context switches than with the default 64 KiB pipe
            fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        while chunk := proc.stdout.read(4 << 20):
            counts["output_bytes"] += len(chunk)
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                rest += chunk
                continue
            consume(rest + chunk[:cut])
            rest = chunk[cut:]
        consume(rest)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    counts["blocks_distinct"] = len(distinct)
    return counts


def metadata_chunks(image: Path, kinds: frozenset[str] = frozenset({"METADATA", "SYSTEM"})) -> list[dict]:
    """METADATA/SYSTEM (or ``kinds``) chunks of a single-device image from the chunk tree:
    [{"logical", "length", "type", "physical": [stripe offsets]}]."""
    out = kernel.capture(["btrfs", "inspect-internal", "dump-tree", "-t", "chunk",
                          os.fspath(image)])
    chunks: list[dict] = []
    cur = None
    for line in out.splitlines():
        m = re.match(r"\s*item \d+ key \(FIRST_CHUNK_TREE CHUNK_ITEM (\d+)\)", line)
        if m:
            cur = {"logical": int(m[1]), "stripes": []}
            chunks.append(cur)
            continue
        if line.lstrip().startswith("item "):
            cur = None
            continue
        if cur is None:
            continue
        m = re.match(r"\s*length (\d+) owner \d+ stripe_len \d+ type (\S+)", line)
        if m:
            cur["length"] = int(m[1])
            cur["type"] = m[2]
            continue
        m = re.match(r"\s*stripe \d+ devid (\d+) offset (\d+)", line)
        if m:
            cur["stripes"].append((int(m[1]), int(m[2])))
    result = []
    for c in chunks:
        parts = c["type"].split("|")
        if not kinds & set(parts):
            continue
        if any(devid != 1 for devid, _ in c["stripes"]):
            raise RuntimeError(f"chunk at {c['logical']} is not on devid 1: "
                               "only single-device images are supported")
        if parts[-1] not in ("METADATA", "SYSTEM", "DATA", "single", "DUP"):
            raise RuntimeError(f"unsupported chunk profile {c['type']} "
                               "(single-device images only: single or DUP)")
        # stripe 0 only: DUP's second copy is what a reader never needs
        result.append({"logical": c["logical"], "length": c["length"], "type": c["type"],
                       "physical": [off for _, off in c["stripes"]]})
    if not result:
        raise RuntimeError(f"no {'/'.join(sorted(kinds))} chunks found in {image}")
    return result


# ==========================================================================
# building (root)


def recipe_key(recipe: Recipe) -> str:
    h = hashlib.sha256()
    h.update(RECIPE_VERSION.encode())
    h.update(json.dumps(asdict(recipe), sort_keys=True).encode())
    for fn in (small_size, large_size, plan_tree, write_file, clone_file, clone_range,
               populate_base, mutate_snapshot, build_standard, build_series,
               kernel.seeded_content):
        h.update(inspect.getsource(fn).encode())
    for const in (SYLLABLES, WORDS, ETC_DIRS, LIB_SUBDIRS, DOC_SUBDIRS):
        h.update(repr(const).encode())
    return f"v{RECIPE_VERSION}-{h.hexdigest()[:10]}"


def estimate_bytes(recipe: Recipe, plan: Plan) -> int:
    """Rough upper bound of the disk space a build needs (all copies)."""
    data = sum(size for _seed, size in plan.files.values())
    data += recipe.snapshots * (recipe.modified * 64 * K + recipe.added * 200 * K)
    meta = 2 * recipe.files * 3 * K          # DUP, generous per-file metadata
    per_image = data + meta + 256 * M
    copies = max(1, len(recipe.series))
    return int(per_image * copies * 1.3)


def check_free_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    log(f"disk space: need ~{needed / G:.1f} GiB, {free / G:.1f} GiB free in {directory}")
    if free < needed + 1 * G:
        raise SystemExit(f"not enough free space in {directory}: need ~{needed / G:.1f} GiB "
                         f"(+1 GiB margin), have {free / G:.1f} GiB; use --cache DIR")


def require_root_tools() -> None:
    if os.geteuid() != 0:
        raise SystemExit("building images needs root (loop devices, mount)")
    kernel.which_or_die("mkfs.btrfs", "btrfs", "losetup", "mount", "umount", "cp",
                        "blkid", "findmnt")


def build_standard(recipe: Recipe, work: Path) -> dict:
    """Build ``work/image.img``; return the facts."""
    plan = plan_tree(recipe)
    check_free_space(work, estimate_bytes(recipe, plan))
    img = work / "image.img.partial"
    timings: dict = {}
    t_all = time.monotonic()
    kernel.make_sparse_image(img, recipe.device_size)
    counts = []
    with kernel.loop_devices([img]) as (dev,):
        t = time.monotonic()
        fsid = kernel.make_fs([dev], fsid=kernel.fixture_uuid(f"bench-{recipe.name}"))
        timings["mkfs_s"] = round(time.monotonic() - t, 2)
        with kernel.mounted(dev) as mnt:
            kernel.run(["btrfs", "subvolume", "create", mnt / "@base"], capture_output=True)
            log(f"populating @base with {len(plan.files):,} files "
                f"({sum(s for _, s in plan.files.values()) / M:.0f} MiB)")
            files = populate_base(recipe, plan, mnt / "@base", timings)
            counts.append({"subvolume": "@base", "files": len(files)})
            t = time.monotonic()
            prev = "@base"
            for s in range(1, recipe.snapshots + 1):
                name = f"@snap{s}"
                kernel.run(["btrfs", "subvolume", "snapshot", mnt / prev, mnt / name],
                           capture_output=True)
                files = mutate_snapshot(recipe, s, mnt / name, files)
                counts.append({"subvolume": name, "files": len(files)})
                log(f"  {name}: snapshot of {prev} + {recipe.modified} modified, "
                    f"{recipe.added} added, {recipe.deleted} deleted -> {len(files):,} files")
                prev = name
            timings["snapshots_s"] = round(time.monotonic() - t, 2)
            t = time.monotonic()
            kernel.run(["btrfs", "filesystem", "sync", mnt], capture_output=True)
            kernel.sync()
            timings["sync_s"] = round(time.monotonic() - t, 2)
            df = filesystem_df(mnt)
            subvols = subvolume_list(mnt)
            t = time.monotonic()
        timings["unmount_s"] = round(time.monotonic() - t, 2)
    log("counting extents with dump-tree")
    t = time.monotonic()
    dt = dump_tree_counts(img)
    timings["facts_dump_tree_s"] = round(time.monotonic() - t, 2)
    timings["total_s"] = round(time.monotonic() - t_all, 2)
    final = work / "image.img"
    os.replace(img, final)
    return {
        "image": "image.img",
        "fsid": fsid,
        "device_size": recipe.device_size,
        "allocated_bytes": final.stat().st_blocks * 512,
        "files_base": counts[0]["files"],
        "files_total": sum(c["files"] for c in counts),
        "per_subvolume": counts,
        "subvolumes": len(subvols),
        "subvolume_list": subvols,
        "df": df,
        "dump_tree": dt,
        "build_timings": timings,
    }


def build_series(recipe: Recipe, work: Path) -> dict:
    """One subvolume plus 0, 10, 50, 100 read-only unchanged snapshots: one
    work image, snapshots added incrementally, copied (cp --sparse=always)
    at each count."""
    plan = plan_tree(recipe)
    check_free_space(work, estimate_bytes(recipe, plan))
    img = work / "work.img.partial"
    timings: dict = {}
    t_all = time.monotonic()
    kernel.make_sparse_image(img, recipe.device_size)
    images = []
    made = 0
    base_id = None
    files_base = 0
    for step, count in enumerate(recipe.series):
        with kernel.loop_devices([img]) as (dev,):
            if step == 0:
                fsid = kernel.make_fs([dev], fsid=kernel.fixture_uuid(f"bench-{recipe.name}"))
            with kernel.mounted(dev) as mnt:
                if step == 0:
                    kernel.run(["btrfs", "subvolume", "create", mnt / "@base"],
                               capture_output=True)
                    log(f"populating @base with {len(plan.files):,} files")
                    files = populate_base(recipe, plan, mnt / "@base", timings)
                    files_base = len(files)
                t = time.monotonic()
                while made < count:
                    made += 1
                    kernel.run(["btrfs", "subvolume", "snapshot", "-r", mnt / "@base",
                                mnt / f"@snap{made:03d}"], capture_output=True)
                timings[f"snapshots_to_{count}_s"] = round(time.monotonic() - t, 2)
                kernel.run(["btrfs", "filesystem", "sync", mnt], capture_output=True)
                kernel.sync()
                df = filesystem_df(mnt)
                subvols = subvolume_list(mnt)
                base_id = next(s["id"] for s in subvols if s["path"] == "@base")
        name = f"snap{count:03d}.img"
        t = time.monotonic()
        if count == recipe.series[-1]:
            os.replace(img, work / name)
        else:
            kernel.run(["cp", "--sparse=always", img, work / name])
        timings[f"copy_{count}_s"] = round(time.monotonic() - t, 2)
        log(f"  {name}: {count} unchanged snapshots, metadata used "
            f"{df['Metadata']['used'] / M:.1f} MiB")
        images.append({"snapshots": count, "image": name, "df": df,
                       "subvolumes": len(subvols),
                       "allocated_bytes": (work / name).stat().st_blocks * 512})
    log("counting extents with dump-tree")
    t = time.monotonic()
    base_counts = dump_tree_counts(work / images[0]["image"], str(base_id))
    for entry in images:
        entry["extent_tree"] = dump_tree_counts(work / entry["image"], "extent")
        # the snapshots are unchanged copies of @base
        entry["extent_data"] = base_counts["extent_data"] * (1 + entry["snapshots"])
        entry["files_total"] = files_base * (1 + entry["snapshots"])
    timings["facts_dump_tree_s"] = round(time.monotonic() - t, 2)
    timings["total_s"] = round(time.monotonic() - t_all, 2)
    return {"fsid": fsid, "device_size": recipe.device_size, "files_base": files_base,
            "base_tree": base_counts, "images": images, "build_timings": timings}


def ensure_built(recipe: Recipe, cache: Path, rebuild: bool) -> tuple[Path, dict]:
    key = recipe_key(recipe)
    work = cache / f"{recipe.name}-{key}"
    facts_path = work / "facts.json"
    if facts_path.exists() and not rebuild:
        facts = json.loads(facts_path.read_text())
        log(f"{recipe.name}: cached image {work} (built in "
            f"{facts['build_timings']['total_s']:.0f}s)")
        return work, facts
    require_root_tools()
    cache.mkdir(parents=True, exist_ok=True)
    for old in sorted(cache.glob(f"{recipe.name}-*")):
        if old != work and old.is_dir():
            log(f"removing cache of an older recipe: {old}")
            kernel.cleanup_stale(old)
            shutil.rmtree(old)
    if work.exists():  # an interrupted build
        kernel.cleanup_stale(work)
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log(f"{recipe.name}: building image in {work} (recipe {key})")
    builder = build_series if recipe.series else build_standard
    facts = builder(recipe, work)
    facts.update({"recipe": asdict(recipe), "recipe_key": key,
                  "tools": kernel.tool_versions()})
    tmp = facts_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(facts, indent=2) + "\n")
    os.replace(tmp, facts_path)
    log(f"{recipe.name}: built in {facts['build_timings']['total_s']:.0f}s "
        f"{json.dumps(facts['build_timings'])}")
    return work, facts


def empty_image(cache: Path) -> Path | None:
    """A freshly made, empty filesystem (mkfs.btrfs on a sparse file, no root needed): btrfsscan's fixed base."""
    image = cache / "empty.img"
    if image.exists():
        return image
    if shutil.which("mkfs.btrfs") is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    tmp = image.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(256 << 20)
    subprocess.run(["mkfs.btrfs", "-q", "-f", "-U", "00000000-0000-4000-8000-0000000000e0", os.fspath(tmp)],
                   check=True, capture_output=True)
    os.replace(tmp, image)
    return image


# ==========================================================================
# timing


RAW_READ_CODE = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
buf = bytearray(4 << 20)
view = memoryview(buf)
total = 0
for r in sys.argv[2:]:
    off, length = map(int, r.split(":"))
    end = off + length
    while off < end:
        n = os.preadv(fd, [view[:min(len(buf), end - off)]], off)
        if n <= 0:
            sys.exit(f"short read at {off}")
        off += n
        total += n
os.close(fd)
print(total)
"""


# Fallback for machines without GNU time: a minimal Python launcher (its own
# ~8 MiB become the floor of the measured peak RSS).
LAUNCHER_CODE = r"""
import os, sys, time
t0 = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, st, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    f.write(f"{ru.ru_maxrss} {ru.ru_utime} {ru.ru_stime} {os.waitstatus_to_exitcode(st)} {wall}\n")
"""


@dataclass
class Run:
    wall: float
    cpu: float
    maxrss_kib: int
    rc: int
    stderr: str


def gnu_time() -> str | None:
    exe = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if not exe:
        return None
    res = subprocess.run([exe, "--version"], capture_output=True, text=True)
    return exe if "GNU" in res.stdout + res.stderr else None


GNU_TIME = gnu_time()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


#: Timed commands run as an installed package does, from byte-compiled modules: a
#: PYTHONDONTWRITEBYTECODE inherited from a development shell would have every run
#: compile the modules edited since their last .pyc (the untimed first run writes them).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def spawn(argv: list[str], timeout: float | None = None) -> Run:
    """Run ``argv`` (stdin and stdout /dev/null); return wall time, CPU time,
    peak RSS, exit code and the tail of stderr.

    The rusage comes from ``wait4`` in a *small* launcher process (GNU
    ``time``, ~1 MiB), not from wait4 in this process: Linux carries the
    parent's RSS high-water mark over fork/vfork + exec into the child's
    ru_maxrss, so a child of this (large, after building an image) process
    would report at least this process's peak.  Wall time is measured here
    around the launcher (which adds ~1 ms).  After ``timeout`` seconds the
    process group is killed and the run reported with exit code -9."""
    if shutil.which(argv[0]) is None:
        raise FileNotFoundError(argv[0])
    fd, rpath = tempfile.mkstemp(prefix="bench-rusage-")
    os.close(fd)
    try:
        if GNU_TIME:
            launcher = [GNU_TIME, "-f", "%M %U %S %x", "-o", rpath, *argv]
        else:
            launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER_CODE, rpath, *argv]
        with tempfile.TemporaryFile() as err:
            actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                       (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                       (os.POSIX_SPAWN_DUP2, err.fileno(), 2)]
            t0 = time.perf_counter()
            # own process group: an interrupted benchmark takes it down whole
            pid = os.posix_spawn(launcher[0], launcher, CHILD_ENV, file_actions=actions,
                                 setpgroup=0)
            timer = None
            if timeout:
                timer = threading.Timer(timeout, _kill_group, (pid,))
                timer.daemon = True
                timer.start()
            try:
                _pid, status, _ru = os.wait4(pid, 0)
                if timer:
                    timer.cancel()
            except BaseException:
                if timer:
                    timer.cancel()
                with kernel.signals_deferred():
                    try:
                        os.killpg(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                    os.waitpid(pid, 0)
                raise
            wall = time.perf_counter() - t0
            err.seek(0)
            tail = err.read()[-4000:].decode(errors="replace")
        lines = Path(rpath).read_text().splitlines()
    finally:
        os.unlink(rpath)
    fields = lines[-1].split() if lines else []
    if timeout and wall >= timeout and len(fields) < 4:
        return Run(wall=wall, cpu=0.0, maxrss_kib=0, rc=-signal.SIGKILL,
                   stderr=tail + f"\n[bench] killed after the {timeout:.0f}s timeout")
    if len(fields) < 4:
        raise RuntimeError(f"launcher failed for {argv}: exit "
                           f"{os.waitstatus_to_exitcode(status)}: {tail.strip()[-500:]}")
    rc = int(fields[3])
    sig = re.search(r"terminated by signal (\d+)", "\n".join(lines))
    if sig:
        rc = -int(sig[1])
    if not GNU_TIME:
        wall = float(fields[4])
    return Run(wall=wall, cpu=float(fields[1]) + float(fields[2]),
               maxrss_kib=int(fields[0]), rc=rc, stderr=tail)


FALLBACKS = {"report": ["--json"], "ls": ["-R", "--json"], "subvolumes": ["--json"]}


def btrfsscan_prefix(override: str | None,
                     candidates=("report", "ls", "subvolumes")) -> tuple[list[str], str]:
    """The btrfsscan command to time: the first of ``candidates`` whose
    ``--help`` works (``report --json`` once it exists; until then
    ``ls -R --json`` or ``subvolumes --json``).  Returns (argv prefix,
    label); ([], reason) when none works."""
    if override:
        argv = shlex.split(override)
        return argv, " ".join(argv)
    # the console script of this interpreter, not a wrapper earlier on PATH
    # (a pyenv shim would add ~100 ms of shell and a second process)
    exe = Path(sys.executable).parent / "btrfsscan"
    if not os.access(exe, os.X_OK):
        exe = shutil.which("btrfsscan")
    base = [os.fspath(exe)] if exe else [sys.executable, "-m", "btrfsscan"]
    tried = []
    for sub in candidates:
        args = FALLBACKS[sub]
        res = subprocess.run(base + [sub, "--help"], capture_output=True, text=True)
        if res.returncode == 0:
            return base + [sub] + args, "btrfsscan " + " ".join([sub] + args)
        tried.append(f"{sub}: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
    return [], "btrfsscan unavailable (" + "; ".join(tried) + ")"


def summarize(label: str, runs: list[Run], extra: dict | None = None) -> dict:
    walls = [r.wall for r in runs]
    return {"command": label, "runs": len(runs),
            "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "cpu_median_s": statistics.median(r.cpu for r in runs),
            "peak_rss_mib": max(r.maxrss_kib for r in runs) / K,
            "exit_codes": sorted({r.rc for r in runs}),
            "walls_s": [round(w, 4) for w in walls], **(extra or {})}


def time_commands(commands: list[tuple[str, list[str], set[int]]], repeat: int,
                  timeout: float | None = None) -> dict:
    """Warm-up run of each command, then ``repeat`` interleaved timed runs.
    ``commands``: (label, argv, accepted exit codes).  A command whose
    warm-up fails is reported as failed and not timed."""
    ok = []
    results: dict = {}
    for label, argv, accept in commands:
        log(f"warm-up: {label}")
        r = spawn(argv, timeout)
        if r.rc not in accept:
            log(f"  FAILED (exit {r.rc}): {r.stderr.strip()[-600:]}")
            results[label] = {"command": label, "argv": argv, "failed": True,
                              "exit_code": r.rc, "stderr": r.stderr[-2000:]}
            continue
        log(f"  {r.wall:.3f}s, {r.maxrss_kib / K:.1f} MiB")
        ok.append((label, argv))
    runs: dict[str, list[Run]] = {label: [] for label, _ in ok}
    for i in range(repeat):
        for label, argv in ok:
            runs[label].append(spawn(argv, timeout))
        log(f"timed round {i + 1}/{repeat}: " + ", ".join(
            f"{runs[label][-1].wall:.3f}s" for label, _ in ok))
    for label, argv in ok:
        results[label] = summarize(label, runs[label], {"argv": argv})
    return results


# ==========================================================================
# reports


def machine_info() -> dict:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        mem = int(m[1]) * K if m else None
    except OSError:
        pass

    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return None
    rev = out(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "-C", REPO, "status", "--porcelain", "--", "btrfsscan"])
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu,
            "mem_gib": round(mem / G, 1) if mem else None,
            "kernel": os.uname().release, "python": platform.python_version(),
            "btrfs_progs": ((out(["btrfs", "--version"]) or "?").splitlines() or ["?"])[0],
            "btrfsscan_rev": (rev or "?") + ("+dirty" if dirty else ""),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def fmt_int(n) -> str:
    return f"{n:,}" if isinstance(n, int) else "n/a"


def fmt_mib(n: int) -> str:
    return f"{n / M:,.1f} MiB"


def machine_lines(mi: dict) -> list[str]:
    progs = mi["btrfs_progs"]
    return [f"machine: {mi['nproc']} CPUs ({mi['cpu_model']}), {mi['mem_gib']} GiB RAM, "
            f"kernel {mi['kernel']}, Python {mi['python']}, {progs}, "
            f"btrfsscan {mi['btrfsscan_rev']}",
            f"load average at start: {' '.join(map(str, mi['loadavg']))}"]


def table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]


def verdict(ok: bool, label: str) -> str:
    """PASS/FAIL, only for `report`: a stand-in command proves nothing."""
    if " report" not in f" {label}":
        return "not judged: a stand-in for `report`"
    return "PASS" if ok else "FAIL"


#: ``report``'s goal against ``dump-tree`` on large (issue 10; issue 6 asked for 0.1).
DUMP_TREE_GOAL = 0.08


def bench_size(recipe: Recipe, args, mi: dict) -> tuple[dict, list[str]]:
    work, facts = ensure_built(recipe, args.cache, args.rebuild)
    image = work / facts["image"]
    chunks = metadata_chunks(image)
    ranges = [f"{c['physical'][0]}:{c['length']}" for c in chunks]
    raw_bytes = sum(c["length"] for c in chunks)
    # `ls -R` prints every file of every subvolume (1.8 million on large):
    # too slow and memory-hungry a stand-in there
    prefix, bs_label = btrfsscan_prefix(
        args.btrfsscan, ("report", "subvolumes") if recipe.files > 50_000
        else ("report", "ls", "subvolumes"))
    commands = []
    if prefix:
        commands.append((bs_label, prefix + [os.fspath(image)], {0, 1}))
    empty = empty_image(args.cache) if prefix else None
    base_label = "btrfsscan on an empty filesystem (the fixed base)"
    if empty is not None:
        commands.append((base_label, prefix + [os.fspath(empty)], {0, 1}))
    dt_label = "btrfs inspect-internal dump-tree"
    commands.append((dt_label, ["btrfs", "inspect-internal", "dump-tree",
                                os.fspath(image)], {0}))
    raw_label = f"raw metadata read ({raw_bytes / M:,.0f} MiB)"
    commands.append((raw_label, [sys.executable, "-c", RAW_READ_CODE, os.fspath(image),
                                 *ranges], {0}))
    log(f"timing on {image}: median of {args.repeat}, warm page cache")
    results = time_commands(commands, args.repeat, args.timeout)

    dt = facts["dump_tree"]
    df = facts["df"]
    refs = dt["extent_data"]
    lines = [f"== {recipe.name}: {image}",
             f"image: {facts['device_size'] / G:.0f} GiB sparse, "
             f"{facts['allocated_bytes'] / M:,.0f} MiB allocated; built in "
             f"{facts['build_timings']['total_s']:.0f}s",
             f"files: {fmt_int(facts['files_base'])} in @base, "
             f"{fmt_int(facts['files_total'])} in all {facts['subvolumes']} subvolumes "
             f"(@base + {recipe.snapshots} snapshots)",
             f"extents: {fmt_int(refs)} EXTENT_DATA items in all fs trees "
             f"({fmt_int(dt['inline'])} inline, {fmt_int(dt['regular'])} regular, "
             f"{fmt_int(dt['prealloc'])} prealloc); {fmt_int(dt['extent_items'])} data "
             f"extents (EXTENT_ITEM)",
             f"metadata: {fmt_mib(df['Metadata']['used'])} used "
             f"({df['Metadata']['profile']}, {fmt_mib(df['Metadata']['total'])} allocated), "
             f"system {fmt_mib(df['System']['used'])} used; "
             f"{fmt_int(dt['blocks_distinct'])} distinct tree blocks, "
             f"{fmt_int(dt['blocks_printed'])} printed by dump-tree "
             f"({dt['output_bytes'] / M:,.0f} MiB of text)",
             f"raw read: {len(chunks)} METADATA/SYSTEM chunks, {raw_bytes / M:,.0f} MiB "
             f"(one copy of each)",
             *machine_lines(mi), ""]
    rows = []
    for label, _argv, _acc in commands:
        r = results[label]
        if r.get("failed"):
            rows.append([label, "FAILED", f"exit {r['exit_code']}", "", "", ""])
            continue
        rows.append([label, f"{r['median_s']:.3f}",
                     f"{r['min_s']:.3f} / {r['max_s']:.3f}",
                     f"{r['cpu_median_s']:.3f}", f"{r['peak_rss_mib']:.1f}",
                     ",".join(map(str, r["exit_codes"]))])
    if not prefix:
        rows.insert(0, ["btrfsscan", "n/a", "", "", "", ""])
    lines += table([f"command (median of {args.repeat})", "median s", "min / max s",
                    "cpu s", "peak RSS MiB", "exit"], rows, {1, 2, 3, 4})
    lines.append("")
    ratios = {}
    bs = results.get(bs_label) if prefix else None
    if bs and not bs.get("failed"):
        d = results[dt_label]
        if not d.get("failed"):
            ratios["btrfsscan_over_dump_tree"] = bs["median_s"] / d["median_s"]
            lines.append(f"btrfsscan / dump-tree:          "
                         f"{ratios['btrfsscan_over_dump_tree']:.3f}  (goal <= {DUMP_TREE_GOAL}: "
                         f"{verdict(ratios['btrfsscan_over_dump_tree'] <= DUMP_TREE_GOAL, bs_label)})")
        rr = results[raw_label]
        if not rr.get("failed"):
            ratios["btrfsscan_over_raw_read"] = bs["median_s"] / rr["median_s"]
            lines.append(f"btrfsscan / raw metadata read:  "
                         f"{ratios['btrfsscan_over_raw_read']:.2f}")
        if refs:
            per_ref = bs["peak_rss_mib"] * M / refs
            ratios["btrfsscan_rss_bytes_per_extent_data"] = per_ref
            lines.append(f"btrfsscan peak RSS / EXTENT_DATA item: {per_ref:.0f} bytes (incl. the fixed base)")
            base = results.get(base_label)
            if base and not base.get("failed"):
                above = (bs["peak_rss_mib"] - base["peak_rss_mib"]) * M / refs
                ratios["btrfsscan_rss_bytes_per_extent_data_above_base"] = above
                lines.append(f"btrfsscan (peak RSS - base {base['peak_rss_mib']:.0f} MiB) / EXTENT_DATA item: "
                             f"{above:.0f} bytes (goal < 100: {verdict(above < 100, bs_label)})")
    else:
        lines.append("btrfsscan ratios: n/a: " + (bs_label if not prefix else "btrfsscan failed"))
    return ({"size": recipe.name, "image": os.fspath(image), "facts": facts,
             "chunks": chunks, "results": results, "ratios": ratios}, lines)


LIVE_WARM_CODE = r"""
import os, sys
root, every = sys.argv[1], int(sys.argv[2])
n = 0
for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(filenames):
        n += 1
        if n % every == 0:
            with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
                while f.read(1 << 20):
                    pass
print(n)
"""

BASE_IMPORT_CODE = "import numpy, btrfsscan.analysis.live"


@contextlib.contextmanager
def mounted_read_only(image: Path, fsid: str) -> Iterator[Path]:
    """The image mounted ``ro,subvolid=5`` through a read-only loop device attached to a hard link outside
    the cache directory: every bench run starts with ``cleanup_stale(cache)``, which would detach a loop
    device backed by a file inside it while this one is timing. Unmounted and detached at the end."""
    for dev in kernel.block_devices_with_fsid(fsid):
        raise SystemExit(f"{dev} already carries fsid {fsid}: not mounting a second copy")
    tmp = Path(tempfile.mkdtemp(prefix="bench-mount-", dir="/var/tmp"))
    link = tmp / "image.img"
    os.link(image, link)
    try:
        loop = kernel.capture(["losetup", "-r", "-f", "--show", os.fspath(link)]).strip()
        try:
            with kernel.mounted(loop, "ro,subvolid=5") as mnt:
                yield mnt
        finally:
            kernel.run(["losetup", "-d", loop], check=False)
    finally:
        link.unlink()
        tmp.rmdir()


def bench_live(recipe: Recipe, args, mi: dict) -> tuple[dict, list[str]]:
    """``live`` (bench/live_probe.py: the collector and the working-set figures) against
    ``find MNT -type f -print0 | xargs -0 fincore`` on the image mounted read-only, partly warm."""
    work, facts = ensure_built(recipe, args.cache, args.rebuild)
    with mounted_read_only(work / facts["image"], facts["fsid"]) as mnt:
        log(f"warming every {args.live_warm_every}th file of {mnt}")
        warm = subprocess.run([sys.executable, "-c", LIVE_WARM_CODE, os.fspath(mnt),
                               str(args.live_warm_every)], capture_output=True, text=True, check=True)
        # saved at once, while the cache is as warm as the timing runs find it (the host may reclaim cold
        # pages in the background: a residency saved after the timing can be a fraction of this one)
        saved = args.cache / "live-residency.json"
        log(f"saving the residency of {mnt} to {saved}")
        subprocess.run([sys.executable, "-m", "btrfsscan", "live", os.fspath(mnt), "--save", os.fspath(saved),
                        "--json"], stdout=subprocess.DEVNULL, check=True, env={**CHILD_ENV, "PYTHONPATH": os.fspath(REPO)})
        with open(saved, encoding="utf-8") as f:
            saved_counts = json.load(f)["counts"]
        probe = [sys.executable, os.fspath(HERE / "live_probe.py"), os.fspath(mnt)]
        figures = json.loads(subprocess.run(probe, capture_output=True, text=True, check=True,
                                            env={**CHILD_ENV, "PYTHONPATH": os.fspath(REPO)}).stdout)
        commands = [
            ("find MNT -type f -print0 | xargs -0 fincore", ["sh", "-c", f"find {shlex.quote(os.fspath(mnt))} "
             "-type f -print0 | xargs -0 fincore > /dev/null"], {0}),
            ("live (collect + working-set figures)", probe, {0}),
            ("python + numpy + live imports (the fixed base)", [sys.executable, "-c", BASE_IMPORT_CODE], {0}),
        ]
        log(f"timing live on {mnt}: median of {args.repeat}")
        CHILD_ENV["PYTHONPATH"] = os.fspath(REPO)
        results = time_commands(commands, args.repeat, args.timeout)
    image = os.fspath(work / facts["image"])
    report = [sys.executable, "-m", "btrfsscan", "report", image, "--json", "--top", "10"]
    offline = [("report IMAGE --json", report, {0}),
               ("report IMAGE --resident FILE --json", [*report, "--resident", os.fspath(saved)], {0, 1})]
    log(f"timing report --resident on {image}: median of {args.repeat}")
    results.update(time_commands(offline, args.repeat, args.timeout))
    commands += offline
    rows = []
    for label, _argv, _acc in commands:
        r = results[label]
        if r.get("failed"):
            rows.append([label, "FAILED", f"exit {r['exit_code']}", "", ""])
            continue
        rows.append([label, f"{r['median_s']:.2f}", f"{r['min_s']:.2f} / {r['max_s']:.2f}",
                     f"{r['cpu_median_s']:.2f}", f"{r['peak_rss_mib']:.1f}"])
    lines = [f"== live on {recipe.name} (mounted read-only, every {args.live_warm_every}th of "
             f"{int(warm.stdout)} files read first)",
             f"figures: {json.dumps(figures)}",
             f"saved residency (report --resident's input): {saved_counts['files_with_pages']:,} files, "
             f"{saved_counts['pages']:,} pages", *machine_lines(mi), ""]
    lines += table([f"command (median of {args.repeat})", "median s", "min / max s", "cpu s", "peak RSS MiB"],
                   rows, {1, 2, 3, 4})
    ratios = {}
    find, live, base, plain, resident = (results[label] for label, _a, _c in commands)
    if not (plain.get("failed") or resident.get("failed")):
        ratios["report_resident_over_report"] = resident["median_s"] / plain["median_s"]
        lines += ["", f"report --resident / report: {ratios['report_resident_over_report']:.2f} (goal <= 1.2: "
                  f"{'PASS' if ratios['report_resident_over_report'] <= 1.2 else 'FAIL'})"]
    if not (live.get("failed") or find.get("failed") or base.get("failed")):
        ratios["live_over_find_fincore"] = live["median_s"] / find["median_s"]
        ratios["live_rss_bytes_per_file_above_base"] = (live["peak_rss_mib"] - base["peak_rss_mib"]) * M / figures["files"]
        lines += ["", f"live / find|fincore: {ratios['live_over_find_fincore']:.2f} (goal <= 1: "
                  f"{'PASS' if ratios['live_over_find_fincore'] <= 1 else 'FAIL'})",
                  f"live (peak RSS - base) / file: {ratios['live_rss_bytes_per_file_above_base']:.0f} bytes "
                  f"(goal <= 200: {'PASS' if ratios['live_rss_bytes_per_file_above_base'] <= 200 else 'FAIL'})"]
    return {"size": recipe.name, "figures": figures, "saved_residency": saved_counts, "results": results, "ratios": ratios}, lines
#: ``ls``'s goals on large (issue 13): ``ls -R --json`` at most this long and this large, the text form at
#: most this many times the JSON form's time.
LS_GOAL_S, LS_GOAL_MIB, LS_TEXT_GOAL = 20.0, 600.0, 1.5


def bench_ls(recipe: Recipe, args, mi: dict) -> tuple[dict, list[str]]:
    """``ls -R --json`` and ``ls -R`` (every entry of every subvolume, streamed) against ``find`` on the image
    mounted read-only (lstat of every entry, printing what ``ls -li`` shows) and ``dump-tree``; peak RSS per
    entry and against the metadata, and on an empty filesystem (the fixed base)."""
    work, facts = ensure_built(recipe, args.cache, args.rebuild)
    image = os.fspath(work / facts["image"])
    base, _ = btrfsscan_prefix(None, ("ls",))
    if not base:
        raise SystemExit("btrfsscan ls is not available")
    base = base[:-2]  # without the fallback's -R --json
    empty = empty_image(args.cache)
    labels = {"json": "btrfsscan ls -R --json", "text": "btrfsscan ls -R", "base": "ls -R --json on an empty "
              "filesystem (the fixed base)", "find": "find MNT -printf '%i %M %n %s %p' (mounted, ro)",
              "dump": "btrfs inspect-internal dump-tree"}
    commands = [(labels["json"], base + ["-R", "--json", image], {0, 1}),
                (labels["text"], base + ["-R", image], {0, 1})]
    if empty is not None:
        commands.append((labels["base"], base + ["-R", "--json", os.fspath(empty)], {0, 1}))
    commands.append((labels["dump"], ["btrfs", "inspect-internal", "dump-tree", image], {0}))
    with contextlib.ExitStack() as stack:
        entries = None
        if os.geteuid() == 0:
            mnt = os.fspath(stack.enter_context(mounted_read_only(Path(image), facts["fsid"])))
            found = subprocess.run(["find", mnt, "-printf", "x"], capture_output=True, check=True).stdout
            entries = len(found)
            commands.append((labels["find"], ["sh", "-c", f"find {shlex.quote(mnt)} -printf '%i %M %n %s %p\\n' "
                                                          "> /dev/null"], {0}))
        else:
            log("not root: find on the mounted image is left out")
        log(f"timing ls on {image}: median of {args.repeat}, warm page cache")
        results = time_commands(commands, args.repeat, args.timeout)
    rows = [[label, f"{r['median_s']:.2f}", f"{r['min_s']:.2f} / {r['max_s']:.2f}", f"{r['cpu_median_s']:.2f}",
             f"{r['peak_rss_mib']:.1f}"] if not r.get("failed") else [label, "FAILED", f"exit {r['exit_code']}", "", ""]
            for label, r in ((label, results[label]) for label, _, _ in commands)]
    meta = facts["df"]["Metadata"]["used"]
    lines = [f"== ls on {recipe.name}: {image}",
             f"entries: {fmt_int(entries) if entries else '?'} (find on the mounted image); metadata "
             f"{fmt_mib(meta)} used", *machine_lines(mi), ""]
    lines += table([f"command (median of {args.repeat})", "median s", "min / max s", "cpu s", "peak RSS MiB"],
                   rows, {1, 2, 3, 4})
    ratios: dict = {}
    js, text = results[labels["json"]], results[labels["text"]]
    if not js.get("failed"):
        lines += ["", f"ls -R --json: {js['median_s']:.2f} s (goal <= {LS_GOAL_S:.0f} s: "
                      f"{'PASS' if js['median_s'] <= LS_GOAL_S else 'FAIL'}), peak RSS {js['peak_rss_mib']:.0f} MiB "
                      f"(goal <= {LS_GOAL_MIB:.0f} MiB: {'PASS' if js['peak_rss_mib'] <= LS_GOAL_MIB else 'FAIL'})"]
        for key in ("dump", "find"):
            other = results.get(labels[key])
            if other and not other.get("failed"):
                ratios[f"json_over_{key}"] = js["median_s"] / other["median_s"]
                lines.append(f"ls -R --json / {labels[key].split(' (')[0]}: {ratios[f'json_over_{key}']:.2f}")
        if not text.get("failed"):
            ratios["text_over_json"] = text["median_s"] / js["median_s"]
            lines.append(f"ls -R / ls -R --json: {ratios['text_over_json']:.2f} (goal <= {LS_TEXT_GOAL}: "
                         f"{'PASS' if ratios['text_over_json'] <= LS_TEXT_GOAL else 'FAIL'})")
        empty_run = results.get(labels["base"])
        if empty_run and not empty_run.get("failed"):
            above = (js["peak_rss_mib"] - empty_run["peak_rss_mib"]) * M
            ratios["rss_above_base_over_metadata"] = above / meta
            lines.append(f"(peak RSS - base {empty_run['peak_rss_mib']:.0f} MiB) / metadata used: "
                         f"{ratios['rss_above_base_over_metadata']:.2f}")
            if entries:
                ratios["rss_bytes_per_entry_above_base"] = above / entries
                lines.append(f"(peak RSS - base) / entry: {ratios['rss_bytes_per_entry_above_base']:.0f} bytes")
    return {"size": recipe.name, "entries": entries, "results": results, "ratios": ratios}, lines


#: Runs ``argv[2:]`` with the image ``argv[1]`` dropped from the page cache first (its clean pages; the
#: host's own reclaim may have dropped some already, which is why the warm rows are medians of warm runs).
COLD_CODE = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)
os.execv(sys.argv[2], sys.argv[2:])
"""


DD_CODE = r"""
import subprocess, sys
image = sys.argv[1]
for r in sys.argv[2:]:
    off, length = map(int, r.split(":"))
    subprocess.run(["dd", f"if={image}", "of=/dev/null", "bs=4M", f"skip={off}", f"count={length}",
                    "iflag=skip_bytes,count_bytes", "status=none"], check=True)
"""


#: Issue 15's goals: ``--by-dir`` at most this many times the same report without it (JSON and text); the
#: HTML page at most this many times the JSON report's time and this large.
BY_DIR_GOAL, HTML_TIME_GOAL, HTML_SIZE_GOAL = 1.2, 1.5, 10_000_000


def bench_by_dir(recipe: Recipe, args, mi: dict) -> tuple[dict, list[str]]:
    """``report --by-dir 3`` (JSON and text) against the same report without it, and the HTML page
    (``--format html -o``, which carries the by-directory treemap) against the JSON report, with its size."""
    work, facts = ensure_built(recipe, args.cache, args.rebuild)
    image = os.fspath(work / facts["image"])
    page = args.cache / "by-dir-report.html"
    report = [sys.executable, "-m", "btrfsscan", "report", image]
    labels = {"json": "report --json", "json_by_dir": "report --json --by-dir 3", "text": "report (text)",
              "text_by_dir": "report --by-dir 3 (text)", "html": "report --format html -o FILE"}
    commands = [(labels["json"], [*report, "--json"], {0}), (labels["json_by_dir"], [*report, "--json", "--by-dir", "3"], {0}),
                (labels["text"], [*report, "--wide"], {0}), (labels["text_by_dir"], [*report, "--wide", "--by-dir", "3"], {0}),
                (labels["html"], [*report, "--format", "html", "-o", os.fspath(page)], {0})]
    CHILD_ENV["PYTHONPATH"] = os.fspath(REPO)
    log(f"timing --by-dir and the HTML page on {image}: median of {args.repeat}, warm page cache")
    results = time_commands(commands, args.repeat, args.timeout)
    size = page.stat().st_size if page.exists() else None
    rows = [[label, f"{r['median_s']:.3f}", f"{r['cpu_median_s']:.3f}", f"{r['peak_rss_mib']:.1f}"]
            if not r.get("failed") else [label, "FAILED", "", ""]
            for label, r in ((label, results[label]) for label, _, _ in commands)]
    lines = [f"== --by-dir and HTML on {recipe.name}: {image}", *machine_lines(mi), ""]
    lines += table([f"command (median of {args.repeat})", "median s", "cpu s", "peak RSS MiB"], rows, {1, 2, 3})
    ratios: dict = {}
    ok = {k: not results[v].get("failed") for k, v in labels.items()}
    lines.append("")
    for form in ("json", "text"):
        if ok[form] and ok[f"{form}_by_dir"]:
            ratios[f"{form}_by_dir_over_{form}"] = r = (results[labels[f"{form}_by_dir"]]["median_s"]
                                                        / results[labels[form]]["median_s"])
            lines.append(f"{labels[f'{form}_by_dir']} / {labels[form]}: {r:.2f} "
                         f"(goal <= {BY_DIR_GOAL}: {'PASS' if r <= BY_DIR_GOAL else 'FAIL'})")
    if ok["html"] and ok["json"] and size is not None:
        ratios["html_over_json"] = r = results[labels["html"]]["median_s"] / results[labels["json"]]["median_s"]
        ratios["html_bytes"] = size
        lines += [f"HTML / JSON report: {r:.2f} (goal <= {HTML_TIME_GOAL}: {'PASS' if r <= HTML_TIME_GOAL else 'FAIL'})",
                  f"HTML page: {size / 1e6:.2f} MB (goal <= {HTML_SIZE_GOAL / 1e6:.0f} MB: "
                  f"{'PASS' if size <= HTML_SIZE_GOAL else 'FAIL'})"]
    return {"size": recipe.name, "results": results, "ratios": ratios}, lines


def bench_designs(recipe: Recipe, args, mi: dict) -> tuple[dict, list[str]]:
    """The content designs' cost: the report pipeline without them, with them (checksum tree), and with
    --read-data, against ``dd bs=4M`` of the DATA chunk ranges (bench/designs.py); the last two also with
    the image dropped from the page cache before each run (``COLD_CODE``)."""
    work, facts = ensure_built(recipe, args.cache, args.rebuild)
    image = os.fspath(work / facts["image"])
    data = metadata_chunks(work / facts["image"], frozenset({"DATA"}))
    data_bytes = sum(c["length"] for c in data)
    script = os.fspath(HERE / "designs.py")
    labels = {"none": "report, registry cut to the 4 extent models", "csum": "report (designs from the checksum tree)",
              "data": "report --read-data", "dd": f"dd bs=4M of the DATA chunks ({data_bytes / M:,.0f} MiB)"}
    commands = [(labels[m], [sys.executable, script, m, image], {0}) for m in ("none", "csum", "data")]
    commands.append((labels["dd"], [sys.executable, "-c", DD_CODE, image,
                                    *[f"{c['physical'][0]}:{c['length']}" for c in data]], {0}))
    log(f"timing the content designs on {image}: median of {args.repeat}, warm page cache")
    results = time_commands(commands, args.repeat, args.timeout)
    # cold: the image dropped from the page cache before each run (its own rounds, so that no warm run
    # finds the cache a cold one emptied); what reading the data costs on a device not read before
    labels.update(data_cold=labels["data"] + ", cold cache", dd_cold=labels["dd"] + ", cold cache")
    cold = [(labels[f"{m}_cold"], [sys.executable, "-c", COLD_CODE, image, *argv], accept)
            for m, (_, argv, accept) in (("data", commands[2]), ("dd", commands[3]))]
    log(f"the same, cold: {image} dropped from the page cache before each run")
    results.update(time_commands(cold, args.repeat, args.timeout))
    rows = [[label, f"{results[label]['median_s']:.3f}", f"{results[label]['cpu_median_s']:.3f}",
             f"{results[label]['peak_rss_mib']:.1f}"] if not results[label].get("failed") else [label, "FAILED", "", ""]
            for label, _, _ in commands + cold]
    lines = [f"== designs on {recipe.name}: {image}", *machine_lines(mi), ""]
    lines += table([f"command (median of {args.repeat})", "median s", "cpu s", "peak RSS MiB"], rows, {1, 2, 3})
    ratios = {}
    ok = {m: not results[labels[m]].get("failed") for m in labels}
    if ok["none"] and ok["csum"]:
        ratios["csum_over_report"] = results[labels["csum"]]["median_s"] / results[labels["none"]]["median_s"]
        lines += ["", f"checksum-tree designs / report: {ratios['csum_over_report']:.2f} "
                      f"(goal <= 1.2: {'PASS' if ratios['csum_over_report'] <= 1.2 else 'FAIL'})"]
    for suffix, cache in (("", "warm"), ("_cold", "cold")):
        if ok["data" + suffix] and ok["dd" + suffix]:
            ratios["read_data_over_dd" + suffix] = r = (results[labels["data" + suffix]]["median_s"]
                                                        / results[labels["dd" + suffix]]["median_s"])
            lines.append(f"--read-data / dd of the DATA chunks, {cache} cache: {r:.2f} "
                         f"(goal <= 2: {'PASS' if r <= 2 else 'FAIL'})")
    return {"size": recipe.name, "results": results, "ratios": ratios, "data_chunks": data}, lines


def bench_series(recipe: Recipe, args, mi: dict) -> tuple[dict, list[str]]:
    work, facts = ensure_built(recipe, args.cache, args.rebuild)
    # no `ls -R` fallback here: its output grows with every snapshot's files
    # (2 million lines at 100 snapshots), so it says nothing about the goal
    prefix, bs_label = btrfsscan_prefix(args.btrfsscan, ("report", "subvolumes"))
    lines = [f"== series: {fmt_int(facts['files_base'])}-file subvolume @base + N unchanged "
             f"read-only snapshots ({work})",
             f"built in {facts['build_timings']['total_s']:.0f}s; "
             f"{fmt_int(facts['base_tree']['extent_data'])} EXTENT_DATA items in @base "
             f"({fmt_int(facts['base_tree']['inline'])} inline)",
             *machine_lines(mi), ""]
    # all images in one interleaved timing loop, so load changes on a shared
    # machine hit every snapshot count alike
    labels = {e["image"]: f"{bs_label} [{e['snapshots']} snapshots]" for e in facts["images"]}
    results = {}
    if prefix:
        results = time_commands([(labels[e["image"]], prefix + [os.fspath(work / e["image"])],
                                  {0, 1}) for e in facts["images"]],
                                 args.repeat, args.timeout)
    else:
        log(f"series: {bs_label}")
    entries = [{**e, "result": results.get(labels[e["image"]])} for e in facts["images"]]
    base = entries[0]["result"]
    rows = []
    for e in entries:
        r = e["result"]
        cells = [str(e["snapshots"]), fmt_int(e["files_total"]), fmt_int(e["extent_data"]),
                 fmt_int(e["extent_tree"]["metadata_items"]),
                 f"{e['df']['Metadata']['used'] / M:,.1f}"]
        if r is None:
            cells += ["n/a", "", "", "", ""]
        elif r.get("failed"):
            cells += ["FAILED", f"exit {r['exit_code']}", "", "", ""]
        else:
            rel = ""
            if base and not base.get("failed"):
                e["relative"] = r["median_s"] / base["median_s"]
                rel = f"{e['relative']:.2f}x"
            cells += [f"{r['median_s']:.3f}", f"{r['min_s']:.3f} / {r['max_s']:.3f}",
                      f"{r['cpu_median_s']:.3f}", f"{r['peak_rss_mib']:.1f}", rel]
        rows.append(cells)
    lines += table(["snapshots", "files", "EXTENT_DATA", "tree blocks", "meta MiB",
                    "median s", "min / max s", "cpu s", "peak RSS MiB", "vs 0"],
                   rows, {1, 2, 3, 4, 5, 6, 7, 8, 9})
    lines.append("")
    summary = {}
    last = entries[-1]
    if prefix and last.get("relative") is not None:
        summary["relative_at_max"] = last["relative"]
        lines.append(f"timed: {bs_label}")
        lines.append(f"{last['snapshots']} snapshots / 0 snapshots: {last['relative']:.2f}x "
                     f"(goal <= 2x: {verdict(last['relative'] <= 2, bs_label)})")
        r0, rn = base, last["result"]
        drefs = last["extent_data"] - entries[0]["extent_data"]
        if drefs > 0:
            slope = (rn["peak_rss_mib"] - r0["peak_rss_mib"]) * M / drefs
            summary["rss_bytes_per_extra_extent_data"] = slope
            lines.append(f"peak RSS growth per extra EXTENT_DATA item: {slope:.1f} bytes "
                         f"(goal < 100: {verdict(slope < 100, bs_label)})")
    else:
        lines.append("timing: n/a: " + (bs_label if not prefix else "btrfsscan failed"))
    return {"series": entries, "facts": facts, "summary": summary,
            "command": bs_label}, lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["medium", "large"], action="append", default=[],
                    help="image to benchmark (repeatable)")
    ap.add_argument("--series", action="store_true",
                    help="time btrfsscan on one subvolume with 0/10/50/100 unchanged snapshots")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help=f"image cache directory (default {DEFAULT_CACHE})")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per command (default 5)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild cached images")
    ap.add_argument("--build-only", action="store_true", help="build/cache images, time nothing")
    ap.add_argument("--btrfsscan", metavar="CMD",
                    help="btrfsscan command prefix to time, IMAGE is appended "
                         "(default: 'btrfsscan report --json'; while report does not "
                         "exist, 'ls -R --json' (medium only) or 'subvolumes --json')")
    ap.add_argument("--timeout", type=float, default=1800, metavar="SEC",
                    help="kill a timed command after SEC seconds (default 1800)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--live", action="store_true",
                    help="instead of report: time the live collector against find | xargs fincore on each "
                         "--size image mounted read-only (needs root), then report --resident on the saved residency against report")
    ap.add_argument("--live-warm-every", type=int, default=10, metavar="N",
                    help="with --live, read every Nth file first: a partly warm cache (default 10)")
    ap.add_argument("--ls", action="store_true",
                    help="instead of report: time `ls -R --json` and `ls -R` on each --size image against find on "
                         "it mounted read-only (needs root for find) and dump-tree")
    ap.add_argument("--by-dir", action="store_true",
                    help="instead of report: time report --by-dir 3 (JSON, text) against report, and the HTML page "
                         "against the JSON report, with its size")
    ap.add_argument("--designs", action="store_true",
                    help="with --size: also time the content designs (checksum tree, --read-data) and dd")
    args = ap.parse_args(argv)
    if not args.size and not args.series:
        ap.error("give --size medium|large and/or --series")
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    args.cache = args.cache.resolve()
    kernel.terminate_on_signals()
    if os.geteuid() == 0 and args.cache.exists():
        kernel.cleanup_stale(args.cache)

    mi = machine_info()
    out: dict = {"machine": mi, "repeat": args.repeat, "sizes": {}, "series": None,
                 "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    printed: list[str] = []
    recipes = [RECIPES[s] for s in dict.fromkeys(args.size)]
    if args.series:
        recipes.append(RECIPES["series"])
    if args.build_only:
        for r in recipes:
            ensure_built(r, args.cache, args.rebuild)
        return 0
    for r in recipes:
        if r.series:
            res, lines = bench_series(r, args, mi)
            out["series"] = res
        elif args.live:
            res, lines = bench_live(r, args, mi)
            out["sizes"][r.name] = res
        elif args.ls:
            res, lines = bench_ls(r, args, mi)
            out["sizes"][r.name] = res
        elif args.by_dir:
            res, lines = bench_by_dir(r, args, mi)
            out["sizes"][r.name] = res
        else:
            res, lines = bench_size(r, args, mi)
            out["sizes"][r.name] = res
            if args.designs:
                res, more = bench_designs(r, args, mi)
                out.setdefault("designs", {})[r.name] = res
                lines += [""] + more
        printed += lines + [""]
        print("\n".join(lines) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
        log(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
