#!/usr/bin/env python3
"""Fuzz btrfsscan with mutated kernel-made images: atheris (coverage-guided) or a plain random loop.

The mutation engine, the fixtures it mutates and the pipeline it runs are
those of ``tests/test_fuzz.py`` (``Base.mutate`` then ``check``: open the
filesystem, subvolumes, FileScanner scan, recursive listing, file maps,
extent tree, page-cache models, and the ``super``/``chunks`` commands).  The
contract: only ``BtrfsScanError`` subclasses escape and every image is done
within ``EXAMPLE_SECONDS``.

    # coverage-guided: the fuzzer's input bytes drive every choice of the engine
    python fuzz/atheris_target.py -atheris_runs=10000 [libFuzzer flags, e.g. -max_len=4096 corpus_dir/]

    # no atheris needed: N random mutations, seeds SEED..SEED+N-1, failures written to --out
    python fuzz/atheris_target.py --random 10000 --seed 1 --out /tmp/btrfsscan-fuzz

    # replay one seed of the random loop (prints the mutation and the exception)
    python fuzz/atheris_target.py --replay 1234

``--bases`` limits the fixtures (comma-separated, e.g. ``volumes/single,files/subvols``);
``--all-bases`` adds the long-run fixtures of ``LONG_BASES``.  A failing
random seed is minimized (its byte patches dropped one by one while the same
exception type still comes out) and written as ``<out>/seed-N.txt``, ready to
become a ``REGRESSIONS`` entry of ``tests/test_fuzz.py``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _import_engine(instrument: bool):
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["btrfsscan"]):
            import btrfsscan.model.filesystem  # noqa: F401
            import btrfsscan.model.fs_tree  # noqa: F401
            import btrfsscan.present.cli  # noqa: F401
    import test_fuzz

    return test_fuzz


def _bases(engine, names: list[str], workdir: str) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = engine.Base(name, Path(workdir) / name.replace("/", "-"))
        except FileNotFoundError:
            print(f"fixture {name} missing, skipped", file=sys.stderr)
    return out


OUTCOMES: dict[str, int] = {}


def _outcome(result: dict) -> str:
    """How far the pipeline got: 'error at <step>', 'partial' or 'ok'."""
    steps = result.get("steps", {})
    failed = [name for name, value in steps.items() if value.startswith("error")]
    if failed:
        return f"error at {failed[0]}"
    return "partial" if result.get("warnings") else "ok"


def run_one(engine, bases: dict, chooser, kinds=None) -> tuple[object, BaseException | None]:
    """One mutated image; (mutation, exception or None); the working copy is restored.

    ``kinds``: the mutations to draw from (default ``MUTATIONS``, every kind).
    """
    name = chooser.choice(sorted(bases))
    base = bases[name]
    mutation = engine.Mutation(name)
    try:
        for _ in range(chooser.int(1, 3)):
            chooser.choice(kinds or engine.MUTATIONS)(base, chooser, mutation)
        outcome = _outcome(engine.check(base, mutation))
        OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1
        return mutation, None
    except Exception as exc:  # noqa: BLE001 - a finding
        return mutation, exc
    finally:
        base.restore()


def replay(engine, bases: dict, mutation) -> BaseException | None:
    base = bases[mutation.base]
    try:
        base.apply(mutation)
        engine.check(base, mutation)
        return None
    except Exception as exc:  # noqa: BLE001
        return exc
    finally:
        base.restore()


def minimize(engine, bases: dict, mutation, exc: BaseException):
    """Drop patches one at a time while the same exception type still comes out."""
    kind = type(exc)
    patches = list(mutation.patches)
    i = 0
    while i < len(patches):
        trial = engine.Mutation(mutation.base, list(mutation.steps), patches[:i] + patches[i + 1:],
                                list(mutation.truncations), mutation.implausible)
        again = replay(engine, bases, trial)
        if again is not None and type(again) is kind:
            patches = trial.patches
        else:
            i += 1
    return engine.Mutation(mutation.base, list(mutation.steps), patches, list(mutation.truncations),
                           mutation.implausible)


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "btrfsscan" in f.filename] or frames
    where = f"{Path(inside[-1].filename).name}:{inside[-1].lineno}" if inside else "?"
    return f"{type(exc).__name__} at {where}"


def random_loop(args) -> int:
    engine = _import_engine(False)
    names = args.bases.split(",") if args.bases else engine.BASES + (engine.LONG_BASES if args.all_bases else [])
    workdir = tempfile.mkdtemp(prefix="btrfsscan-fuzz-")
    bases = _bases(engine, names, workdir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [args.replay] if args.replay is not None else range(args.seed, args.seed + args.random)
    start = time.perf_counter()
    found: dict[str, list[int]] = {}
    hangs = 0
    done = 0
    for seed in seeds:
        kinds = engine.SEMANTIC_MUTATIONS if args.semantic else None
        mutation, exc = run_one(engine, bases, engine.RandomChooser(random.Random(seed)), kinds)
        done += 1
        if args.replay is not None:
            print(mutation)
            if exc is not None:
                traceback.print_exception(exc)
            return 1 if exc is not None else 0
        if exc is None:
            if done % 500 == 0:
                print(f"{done} mutations, {sum(map(len, found.values()))} failures, "
                      f"{time.perf_counter() - start:.0f} s", flush=True)
            continue
        hangs += isinstance(exc, engine.Hang)
        signature = _signature(exc)
        found.setdefault(signature, []).append(seed)
        if len(found[signature]) == 1:
            small = minimize(engine, bases, mutation, exc)
            text = "".join(traceback.format_exception(exc))
            (out / f"seed-{seed}.txt").write_text(f"seed {seed}\n{signature}\n{exc}\n\nminimized: {small}\n\n"
                                                  f"original: {mutation}\n\n{text}")
            print(f"seed {seed}: {signature}: {exc}", flush=True)
    elapsed = time.perf_counter() - start
    failures = sum(map(len, found.values()))
    print(f"done: {done} mutations in {elapsed:.0f} s ({elapsed / max(done, 1) * 1000:.0f} ms each), "
          f"{failures} failures ({len(found)} distinct, {hangs} hangs)")
    for signature, seeds_ in found.items():
        print(f"  {signature}: {len(seeds_)} (first seed {seeds_[0]})")
    print("outcomes of the images that passed: " + ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES.items())))
    return 1 if found else 0


class AtherisChooser:
    """The engine's choices taken from the fuzzer's input bytes."""

    def __init__(self, fdp) -> None:
        self.fdp = fdp

    def int(self, lo: int, hi: int) -> int:
        return self.fdp.ConsumeIntInRange(lo, hi) if hi > lo else lo

    def bytes(self, n: int) -> bytes:
        return self.fdp.ConsumeBytes(n).ljust(n, b"\0")

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def chance(self, percent: int) -> bool:
        return self.int(0, 99) < percent


def atheris_main(argv: list[str], bases_arg: str | None, all_bases: bool) -> None:
    import atheris

    engine = _import_engine(True)
    names = bases_arg.split(",") if bases_arg else engine.BASES + (engine.LONG_BASES if all_bases else [])
    bases = _bases(engine, names, tempfile.mkdtemp(prefix="btrfsscan-fuzz-"))

    def test_one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        mutation, exc = run_one(engine, bases, AtherisChooser(fdp))
        if exc is not None:
            print(mutation, file=sys.stderr)
            raise exc

    atheris.Setup([sys.argv[0], *argv], test_one_input)
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=True)
    parser.add_argument("--random", type=int, metavar="N", help="plain random loop of N mutations (no atheris)")
    parser.add_argument("--seed", type=int, default=0, help="first seed of the random loop")
    parser.add_argument("--replay", type=int, metavar="SEED", help="replay one seed of the random loop")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "btrfsscan-fuzz"),
                        help="where the random loop writes failures")
    parser.add_argument("--bases", help="comma-separated fixtures to mutate")
    parser.add_argument("--all-bases", action="store_true", help="also the long-run fixtures")
    parser.add_argument("--semantic", action="store_true",
                        help="random loop: only semantic mutations (implausible item values, checksums recomputed); "
                             "a clean result where the item is read counts as a failure (Implausible)")
    args, rest = parser.parse_known_args()
    if args.random is not None or args.replay is not None:
        return random_loop(args)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed (pip install atheris); running the random loop instead", file=sys.stderr)
        args.random = 1000
        return random_loop(args)
    atheris_main(rest, args.bases, args.all_bases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
