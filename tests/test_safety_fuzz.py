"""Fuzz the restricted unpickler: every case loads a value of the permitted kinds or raises DreError.

Each load runs in a worker subprocess (tests/_fuzz_worker.py) that reports case by case, so a
segmentation fault or a hang is pinned on the case that caused it instead of killing the test run.
The default run takes every hand-written hostile case plus a bounded sample of mutations; ``-m slow``
runs thousands of mutations, including mutations of the full synthetic FLAME and landmark files.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests._fuzz_worker import WHERE, run_cases
from tests._pickle_cases import Case, fuzz_cases, hostile_cases, mutate, seeds

FAST_FUZZ = 300
SLOW_FUZZ = 6000


def _failures(cases: list[Case], results: list[str]) -> list[str]:
    """Cases whose outcome is neither a permitted value nor a DreError naming the file (and key)."""
    bad = []
    for (name, kind, _payload), outcome in zip(cases, results):
        tag = outcome.split(" ", 1)[0]
        if tag == "ok" or (tag == "dre" and WHERE[kind] in outcome):
            continue
        bad.append(f"{name} ({kind}): {outcome[:300]}")
    return bad


def test_seeds_hostile_cases_and_a_fuzz_sample() -> None:
    hostile, valid = hostile_cases(), seeds()
    cases = valid + hostile + list(fuzz_cases(FAST_FUZZ, seed=1))
    results = run_cases(cases)
    assert not _failures(cases, results), "\n".join(_failures(cases, results))
    assert all(r == "ok" for r in results[: len(valid)]), results[: len(valid)]
    # every hand-written attack is refused (a shared-subtree DAG is a legitimate value, memoised, not refused)
    hostile_out = dict(zip((n for n, _k, _p in hostile), results[len(valid) : len(valid) + len(hostile)]))
    assert hostile_out.pop("exponential-dag") == "ok"
    not_refused = {n: r for n, r in hostile_out.items() if not r.startswith("dre ")}
    assert not not_refused, not_refused
    # the message names the offending global or opcode
    assert "os.system" in hostile_out["global-os-system"]
    assert "opcode BUILD" in hostile_out["build-on-dict"]
    assert "'V16'" in hostile_out["object-field-flags-cleared"] and "['v_template']" in hostile_out[
        "object-field-flags-cleared"]


@pytest.mark.slow
def test_fuzz_thousands(synthetic_assets: Path) -> None:
    cases = list(fuzz_cases(SLOW_FUZZ, seed=2))
    rng = random.Random(3)  # and the full files `dre assets synth` writes, in their official formats
    flame = (synthetic_assets / "generic_model.pkl").read_bytes()
    emb = (synthetic_assets / "landmark_embedding.npy").read_bytes()
    cases += [(f"synth-flame-{k}", "flame", mutate(flame, rng)) for k in range(30)]
    cases += [(f"synth-npy-{k}", "npy", mutate(emb, rng)) for k in range(300)]
    results = run_cases(cases)
    failures = _failures(cases, results)
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:50])
