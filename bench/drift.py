"""Benchmark: drift check of 1M current rows — provenflow's stored-profile check vs Evidently's DataDriftPreset.

    .venv/bin/python bench/drift.py [--reference-rows 100000] [--current-rows 1000000] [--reps 3] [--no-per-test]

Reference 100k rows and current 1M rows of 20 numeric + 5 categorical features (a mix of shapes;
some features shifted in the current data), written once to ``bench/.work/`` as Parquet. Each side
runs in its own subprocess (``workers/drift_*.py``), reads the same files, times itself and reports
its peak RSS. Both sides use the same tests and thresholds: Wasserstein (normed by the reference
std) ≥ 0.1 for numeric columns, PSI ≥ 0.1 for categorical ones. With ``--per-test`` (default) the
Evidently worker also runs its psi/ks/wasserstein/chisquare functions on every column, untimed, to
compare every test's verdict with ours.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from common import OUR_PYTHON, WORK, console, machine_summary, record, run_worker, scratch_dir, verdict
from rich.table import Table

TARGET_SECONDS = 1.5
TARGET_SPEEDUP = 20.0
TARGET_AGREEMENT = 0.95
TARGET_MEMORY_SHARE = 0.5

# name: (what it is, what changes in the current data)
NUMERIC = {
    "n00_normal": "normal; current +0.3 σ",
    "n01_lognormal": "lognormal; current ×1.3",
    "n02_exponential": "exponential; current +0.5",
    "n03_uniform": "uniform; unchanged",
    "n04_gamma": "gamma(2); current gamma(2.6)",
    "n05_student_t": "Student t(5); unchanged",
    "n06_poisson": "Poisson(4); current Poisson(5)",
    "n07_bimodal": "two normals 50/50; current 65/35",
    "n08_normal": "normal; current +0.05 σ (small)",
    "n09_beta": "beta(2, 5); unchanged",
    "n10_normal_wide": "normal σ=1000; unchanged",
    "n11_lognormal": "lognormal σ=1.5; unchanged",
    "n12_exponential": "exponential; current +0.08 (small)",
    "n13_normal": "normal; current σ ×1.25",
    "n14_uniform": "uniform; unchanged",
    "n15_gamma": "gamma(0.5); unchanged",
    "n16_normal": "normal; 5% missing; unchanged",
    "n17_pareto": "Pareto(3); unchanged",
    "n18_poisson": "Poisson(30); unchanged",
    "n19_normal": "normal; unchanged",
}
CATEGORICAL = {
    "c0_region": "5 categories; current: one category 35% → 55%",
    "c1_channel": "8 categories; current: a new category at 3%",
    "c2_plan": "20 categories; unchanged",
    "c3_city": "120 categories (long tail beyond the 50 kept); unchanged",
    "c4_flag": "yes/no; unchanged",
}


def _categories(rng: np.random.Generator, labels: list[str], p: np.ndarray, rows: int) -> np.ndarray:
    return rng.choice(np.array(labels, dtype=object), size=rows, p=p / p.sum())


def make_frame(rows: int, current: bool, seed: int) -> pd.DataFrame:
    """The benchmark data; ``current`` applies the shifts listed in NUMERIC/CATEGORICAL."""
    rng = np.random.default_rng(seed)
    s = current  # shorthand: shifted in the current data
    half = rng.random(rows) < (0.35 if s else 0.5)
    data = {
        "n00_normal": rng.normal(0.3 if s else 0.0, 1.0, rows),
        "n01_lognormal": rng.lognormal(0.0, 0.5, rows) * (1.3 if s else 1.0),
        "n02_exponential": rng.exponential(1.0, rows) + (0.5 if s else 0.0),
        "n03_uniform": rng.uniform(-1.0, 1.0, rows),
        "n04_gamma": rng.gamma(2.6 if s else 2.0, 1.0, rows),
        "n05_student_t": rng.standard_t(5, rows),
        "n06_poisson": rng.poisson(5 if s else 4, rows).astype("float64"),
        "n07_bimodal": np.where(half, rng.normal(3.0, 1.0, rows), rng.normal(-3.0, 1.0, rows)),
        "n08_normal": rng.normal(0.05 if s else 0.0, 1.0, rows),
        "n09_beta": rng.beta(2.0, 5.0, rows),
        "n10_normal_wide": rng.normal(5000.0, 1000.0, rows),
        "n11_lognormal": rng.lognormal(0.0, 1.5, rows),
        "n12_exponential": rng.exponential(1.0, rows) + (0.08 if s else 0.0),
        "n13_normal": rng.normal(0.0, 1.25 if s else 1.0, rows),
        "n14_uniform": rng.uniform(0.0, 100.0, rows),
        "n15_gamma": rng.gamma(0.5, 1.0, rows),
        "n16_normal": np.where(rng.random(rows) < 0.05, np.nan, rng.normal(10.0, 2.0, rows)),
        "n17_pareto": rng.pareto(3.0, rows),
        "n18_poisson": rng.poisson(30, rows).astype("float64"),
        "n19_normal": rng.normal(-2.0, 0.5, rows),
    }
    region_p = np.array([0.35, 0.25, 0.2, 0.12, 0.08])
    if s:
        region_p = np.array([0.55, *(region_p[1:] / region_p[1:].sum() * 0.45)])
    channels = [f"ch{i}" for i in range(8)]
    channel_p = np.linspace(2.0, 1.0, 8)
    if s:
        channels, channel_p = [*channels, "ch_new"], np.append(channel_p / channel_p.sum() * 0.97, 0.03)
    cities = [f"city{i:03d}" for i in range(120)]
    data |= {
        "c0_region": _categories(rng, ["north", "south", "east", "west", "centre"], region_p, rows),
        "c1_channel": _categories(rng, channels, channel_p, rows),
        "c2_plan": _categories(rng, [f"plan{i:02d}" for i in range(20)], np.linspace(3.0, 1.0, 20), rows),
        "c3_city": _categories(rng, cities, 1.0 / np.arange(1, 121), rows),
        "c4_flag": _categories(rng, ["yes", "no"], np.array([0.7, 0.3]), rows),
    }
    return pd.DataFrame(data)


def data_files(reference_rows: int, current_rows: int) -> tuple[Path, Path]:
    """Generate the two Parquet files once per size; later runs reuse them."""
    WORK.mkdir(parents=True, exist_ok=True)
    ref = WORK / f"drift-reference-{reference_rows}.parquet"
    cur = WORK / f"drift-current-{current_rows}.parquet"
    if not ref.exists():
        console.print(f"generating {ref.name} ...")
        make_frame(reference_rows, current=False, seed=1).to_parquet(ref, index=False)
    if not cur.exists():
        console.print(f"generating {cur.name} ...")
        make_frame(current_rows, current=True, seed=2).to_parquet(cur, index=False)
    return ref, cur


def agreement_table(ours: dict, theirs: dict) -> tuple[float, list[str]]:
    """The matched preset's per-feature verdicts side by side; returns the agreement and the disagreements."""
    table = Table(
        title="Per-feature verdicts, same tests and thresholds (numeric: wasserstein ≥ 0.1, categorical: psi ≥ 0.1)"
    )
    for column in ("feature", "data", "test", "ours", "evidently", "drift ours", "drift evidently", "agree"):
        table.add_column(column, justify="right" if column in ("ours", "evidently") else "left")
    differ = []
    descriptions = NUMERIC | CATEGORICAL
    for name, mine in ours.items():
        other = theirs[name]
        agree = mine["drift"] == other["drift"]
        if not agree:
            differ.append(name)
        table.add_row(
            name, descriptions[name], mine["test"], f"{mine['score']:.4f}", f"{other['score']:.4f}",
            str(mine["drift"]), str(other["drift"]), "yes" if agree else "[red]NO[/red]",
        )  # fmt: skip
    console.print(table)
    return 1 - len(differ) / len(ours), differ


def per_test_agreement(ours: dict, per_test: dict) -> tuple[int, int, list[str], list[str]]:
    """Every test both sides compute (numeric psi/ks/wasserstein, categorical psi/chi-square), and
    the tests only Evidently ran: a discrete numeric feature (few distinct values, e.g. Poisson) is
    checked by us as categorical, so it carries psi/chi-square but no ks or wasserstein."""
    total, same, differ, only_theirs = 0, 0, [], []
    for name, feature in ours.items():
        for test, theirs in per_test.get(name, {}).items():
            mine = feature["tests"].get(test)
            if mine is None:
                only_theirs.append(f"{name} {test}")
                continue
            total += 1
            if mine["drift"] == theirs["drift"]:
                same += 1
            else:
                differ.append(
                    f"{name} {test}: ours {mine['score']:.4g} ({'drift' if mine['drift'] else 'no drift'}), "
                    f"evidently {theirs['score']:.4g} ({'drift' if theirs['drift'] else 'no drift'})"
                )
    return same, total, differ, only_theirs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--current-rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of our check (median reported)")
    parser.add_argument(
        "--no-per-test", action="store_true", help="skip Evidently's per-test pass (saves ~1 min)"
    )
    args = parser.parse_args()

    console.print(machine_summary())
    ref, cur = data_files(args.reference_rows, args.current_rows)
    with scratch_dir("drift-ours") as tmp:
        console.print("running provenflow ...")
        ours = run_worker(OUR_PYTHON, "drift_ours", tmp, str(ref), str(cur), "--reps", str(args.reps))
    with scratch_dir("drift-evidently") as tmp:
        console.print("running evidently DataDriftPreset ...")
        extra = () if args.no_per_test else ("--per-test",)
        theirs = run_worker(OUR_PYTHON, "drift_evidently", tmp, str(ref), str(cur), *extra)

    agreement, differ = agreement_table(ours["features"], theirs["preset"])
    speedup = theirs["run_s"] / ours["check_median_s"]
    memory_share = ours["peak_mib"] / theirs["peak_mib"]
    table = Table(
        title=f"Drift check, {args.reference_rows:,} reference rows (as a stored profile) vs {args.current_rows:,} current rows, 25 features"
    )
    for column in ("measurement", "value", "target", "result"):
        table.add_column(column)
    table.add_row("ours: profile_of(reference), once at training", f"{ours['profile_s']:.3f} s", "", "")
    table.add_row(
        f"ours: check_drift, matched policy (median of {args.reps})", f"{ours['check_median_s']:.3f} s",
        f"≤ {TARGET_SECONDS} s", verdict(ours["check_median_s"] <= TARGET_SECONDS),
    )  # fmt: skip
    table.add_row("ours: check_drift, default policy", f"{ours['default_policy_s']:.3f} s", "", "")
    table.add_row(f"evidently {theirs['version']}: DataDriftPreset run()", f"{theirs['run_s']:.3f} s", "", "")
    table.add_row(
        "speed-up (evidently ÷ ours)",
        f"{speedup:.1f}×",
        f"≥ {TARGET_SPEEDUP:.0f}×",
        verdict(speedup >= TARGET_SPEEDUP),
    )
    table.add_row(
        "per-feature verdicts agree", f"{agreement:.0%} ({len(ours['features']) - len(differ)}/{len(ours['features'])})",
        f"≥ {TARGET_AGREEMENT:.0%}", verdict(agreement >= TARGET_AGREEMENT),
    )  # fmt: skip
    table.add_row(
        "peak RSS ours / evidently (MiB)", f"{ours['peak_mib']:.0f} / {theirs['peak_mib']:.0f}", "", ""
    )
    table.add_row(
        "peak RSS above the loaded data, ours / evidently (MiB)",
        f"{ours['peak_mib'] - ours['peak_mib_loaded']:.0f} / {theirs['peak_mib'] - theirs['peak_mib_loaded']:.0f}", "", "",
    )  # fmt: skip
    table.add_row(
        "memory share (ours ÷ evidently, peak RSS)",
        f"{memory_share:.2f}",
        f"≤ {TARGET_MEMORY_SHARE}",
        verdict(memory_share <= TARGET_MEMORY_SHARE),
    )
    console.print(table)
    size = f"{args.current_rows:,} × 25 vs {args.reference_rows:,}"
    full = args.current_rows >= 1_000_000  # the targets are for the full size
    record(
        f"drift: check_drift ({size})", ours["check_median_s"], "s", target=TARGET_SECONDS if full else None
    )
    record(
        f"drift: Evidently preset ÷ ours ({size})",
        speedup,
        "×",
        target=TARGET_SPEEDUP if full else None,
        better="higher",
    )
    record(f"drift: verdicts agree ({size})", agreement, "", target=TARGET_AGREEMENT, better="higher")
    record(
        f"drift: peak RSS ours ÷ Evidently ({size})",
        memory_share,
        "",
        target=TARGET_MEMORY_SHARE if full else None,
    )
    if differ:
        console.print("Preset verdicts differ on: " + ", ".join(differ))
    if theirs["per_test"]:
        same, total, test_differ, only_theirs = per_test_agreement(ours["features"], theirs["per_test"])
        console.print(
            f"Every test, same thresholds (psi 0.1, wasserstein 0.1, ks/chi-square p 0.05): {same}/{total} verdicts agree ({same / total:.0%})."
        )
        for line in test_differ:
            console.print(f"  differs: {line}")
        if only_theirs:
            console.print(
                f"  not compared (ours checks these discrete features as categorical): {', '.join(only_theirs)}"
            )
    console.print(
        f"Default policy (psi + wasserstein + missing, significance-guarded) flags: {', '.join(ours['default_drifted'])}"
    )


if __name__ == "__main__":
    main()
