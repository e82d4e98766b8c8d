"""Run a fuzz campaign: ``python -m tests.fuzz.run --iterations N --seed S [--save]``.

Each iteration picks a seed (or an accepted mutant), mutates it, writes it into a scratch folder and
checks it with the oracle. Findings are printed once per root cause (target, exception, where it
was raised); ``--save`` keeps each new one as a regression case in ``tests/fuzz/regressions/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .mutate import mutate
from .oracle import OPTIONAL_TARGETS, TARGETS, Finding, check
from .seeds import FINDING_NAME, SPECIALS_NAME, Case, build_seeds, save_case

__all__ = ["REGRESSIONS", "CampaignResult", "campaign", "main"]

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
_MAX_CASE_BYTES = 1024 * 1024
_CORPUS_LIMIT = 400


@dataclass
class CampaignResult:
    """What a campaign did: iterations, seconds, inputs read (the rest refused cleanly), one finding
    per root cause."""

    iterations: int = 0
    seconds: float = 0.0
    accepted: int = 0
    refused: int = 0
    findings: dict[str, tuple[Finding, Case]] = field(default_factory=dict)


def _clear(folder: Path) -> None:
    if folder.exists() or folder.is_symlink():
        shutil.rmtree(folder)


def extra_seeds(folder: Path, limit: int = 5, max_bytes: int = 1_000_000) -> list[Case]:
    """A few small real ``.onnx`` files from ``folder`` (external data is not copied)."""
    found = sorted(
        p for p in folder.rglob("*.onnx") if p.is_file() and p.stat().st_size < max_bytes
    )
    return [Case(f"extra_{p.stem}", p.read_bytes()) for p in found[:limit]]


def campaign(
    *,
    seed: int,
    iterations: int | None = None,
    seconds: float | None = None,
    targets: tuple[str, ...] = tuple(TARGETS),
    time_limit_s: float = 20.0,
    seeds: list[Case] | None = None,
    on_finding: Callable[[Finding, Case], None] | None = None,
) -> CampaignResult:
    """Mutate and check until ``iterations`` or ``seconds`` runs out (whichever comes first)."""
    rng = random.Random(seed)
    corpus = list(seeds if seeds is not None else build_seeds())
    donors = [c.model for c in corpus]
    result = CampaignResult()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modelsize-fuzz-") as tmp:
        work = Path(tmp)
        (work / "outside.bin").write_bytes(b"\0" * 4096)  # what an escaping location would reach
        while True:
            if iterations is not None and result.iterations >= iterations:
                break
            if seconds is not None and time.monotonic() - start >= seconds:
                break
            case = mutate(rng.choice(corpus), rng, donors)
            if case.size() > _MAX_CASE_BYTES:
                continue
            result.iterations += 1
            folder = work / "case"
            _clear(folder)
            path = save_case(case, folder)
            finding, read = check(path, targets=targets, time_limit_s=time_limit_s)
            if finding is None and not read:
                result.refused += 1
            elif finding is None:
                result.accepted += 1
                # inputs every reader accepted are mutated further: damage deep inside valid files
                if len(corpus) < _CORPUS_LIMIT and rng.random() < 0.2:
                    corpus.append(case)
            elif finding.signature not in result.findings:
                result.findings[finding.signature] = (finding, case)
                if on_finding is not None:
                    on_finding(finding, case)
        _clear(work / "case")
    result.seconds = time.monotonic() - start
    return result


def save_regression(finding: Finding, case: Case, folder: Path = REGRESSIONS) -> Path:
    """Keep ``case`` as a regression: ``<folder>/<target>-<kind>-<hash>/`` (m.onnx, files,
    specials.json, finding.txt)."""
    digest = hashlib.blake2b(finding.signature.encode(), digest_size=4).hexdigest()
    target = folder / f"{finding.target}-{finding.kind}-{digest}"
    _clear(target)
    save_case(Case(case.name, case.model, case.files, {}), target)
    if case.specials:
        (target / SPECIALS_NAME).write_text(
            json.dumps(case.specials, indent=1, sort_keys=True) + "\n"
        )
    (target / FINDING_NAME).write_text(
        f"{finding.signature}\n{finding.detail}\nfrom seed: {case.name}\n"
    )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz the ONNX loader (see docs/fuzzing.md).")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds per input")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated, of {', '.join([*TARGETS, *OPTIONAL_TARGETS])}",
    )
    parser.add_argument("--extra-seeds", type=Path, default=None, help="a folder of .onnx files")
    parser.add_argument(
        "--save", action="store_true", help="keep findings in tests/fuzz/regressions"
    )
    parser.add_argument("--save-to", type=Path, default=None, help="keep findings in this folder")
    args = parser.parse_args(argv)
    if args.iterations is None and args.seconds is None:
        args.iterations = 1000
    seeds = build_seeds()
    if args.extra_seeds is not None and args.extra_seeds.is_dir():
        seeds += extra_seeds(args.extra_seeds)

    def report(finding: Finding, case: Case) -> None:
        folder = args.save_to or (REGRESSIONS if args.save else None)
        where = save_regression(finding, case, folder) if folder is not None else None
        print(f"FINDING {finding.signature}: {finding.detail[:160]}", flush=True)
        if where is not None:
            print(f"  saved as {where}", flush=True)

    result = campaign(
        seed=args.seed,
        iterations=args.iterations,
        seconds=args.seconds,
        targets=tuple(args.targets.split(",")),
        time_limit_s=args.time_limit,
        seeds=seeds,
        on_finding=report,
    )
    rate = result.iterations / max(result.seconds, 1e-9)
    print(
        f"{result.iterations} iterations in {result.seconds:.0f} s ({rate:.1f}/s), "
        f"{result.accepted} read, {result.refused} refused cleanly, "
        f"{len(result.findings)} distinct findings "
        f"(seed {args.seed}, {len(seeds)} seeds)"
    )
    return 1 if result.findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
