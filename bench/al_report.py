"""Benchmark outputs: curves.csv, details.csv, summary.json, curves.png and a markdown table.

Gains are relative to the random strategy at the same budget (mean over seeds, plus the
paired per-seed gains, which cancel most of the seed-to-seed variance of the shared
initial model). ``labels_to_match_random_final`` is the first budget at which a strategy's
mean IoU reaches random's final mean IoU, as a fraction of random's final budget.
"""
from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .al_protocol import Protocol

CURVE_COLUMNS = ["strategy", "seed", "round", "n_labeled", "iou", "iou_z"]
DETAIL_COLUMNS = ["strategy", "seed", "round", "miou", "fg_share", "select_s", "train_s", "eval_s"]
#: Issue 8's targets (model quality v2).
TARGETS = {"random_final": 0.62, "gain_at_mid": 0.15, "gain_final": 0.05, "labels_to_match": 0.6,
           "unet_minus_rf": 0.10, "final_vs_full": 0.15, "initial_sd": 0.05, "initial_mean": 0.40}


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def curve_rows(results: dict) -> list[dict]:
    rows = [r for res in results["strategy"] for r in res["rows"]] + [r for res in results["rf"] for r in res["rows"]]
    return sorted(rows, key=lambda r: (r["strategy"], r["seed"], r["round"]))


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()})
    _atomic(path, write)


def _table(rows: list[dict]) -> dict[str, dict[int, dict[int, float]]]:
    """strategy -> n_labeled -> seed -> iou."""
    out: dict = {}
    for r in rows:
        out.setdefault(r["strategy"], {}).setdefault(r["n_labeled"], {})[r["seed"]] = r["iou"]
    return out


def _mean(d: dict[int, float] | None) -> float | None:
    return float(np.mean(list(d.values()))) if d else None


def _paired(a: dict[int, float] | None, b: dict[int, float] | None) -> dict[str, float]:
    if not a or not b:
        return {}
    return {str(s): round(a[s] / b[s] - 1.0, 4) for s in sorted(a) if s in b and b[s] > 0}


def _rel(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b - 1.0, 4)


def _strategy_summary(name: str, table: dict, proto: Protocol, details: list[dict]) -> dict:
    budgets, mid, final = proto.budgets, proto.budgets[proto.mid_round], proto.budgets[-1]
    cur, rnd = table.get(name, {}), table.get("random", {})
    rand_final = _mean(rnd.get(final))
    match = None
    if rand_final is not None:
        match = next((b / final for b in budgets if (_mean(cur.get(b)) or -1) >= rand_final), None)
    finals = list((cur.get(final) or {}).values())
    mine = [d for d in details if d["strategy"] == name]
    if {d["seed"] for d in mine} != set(cur.get(final) or {}):
        mine = []                    # pooled runs kept without details: a share of some seeds only would mislead
    picks = [d["fg_share"] for d in mine]
    final_miou = [d["miou"] for d in mine if d["round"] == proto.rounds and "miou" in d]
    return {
        "final_iou": _mean(cur.get(final)),
        "final_iou_std": float(np.std(finals)) if finals else None,
        "iou_at_mid": _mean(cur.get(mid)),
        "gain_vs_random_at_mid": _rel(_mean(cur.get(mid)), _mean(rnd.get(mid))),
        "gain_vs_random_final": _rel(_mean(cur.get(final)), rand_final),
        "labels_to_match_random_final": None if match is None else round(match, 4),
        "paired_gain_at_mid": _paired(cur.get(mid), rnd.get(mid)),
        "paired_gain_final": _paired(cur.get(final), rnd.get(final)),
        "mito_patch_share": float(np.mean(picks)) if picks else None,
        "final_miou_2class": float(np.mean(final_miou)) if final_miou else None,
        "mean_curve": {str(b): _mean(cur.get(b)) for b in budgets if cur.get(b)},
    }


def summarize(results: dict, proto: Protocol) -> dict:
    """The run's summary; with the z-consensus scores recorded, their own summary under ``z_consensus``."""
    out = _summary(results, proto)
    if _has_consensus(results):
        mixed = _summary(_as_consensus(results), proto)
        out["z_consensus"] = {k: mixed[k] for k in CONSENSUS_KEYS}
    return out


def _summary(results: dict, proto: Protocol) -> dict:
    rows = curve_rows(results)
    table = _table(rows)
    details = [d for res in results["strategy"] for d in res["details"]]
    mid, final = proto.budgets[proto.mid_round], proto.budgets[-1]
    strategies = {name: _strategy_summary(name, table, proto, details) for name in proto.strategies}
    full = [f["iou"] for f in results["full"]]
    rf = table.get("rf_baseline", {})
    out: dict[str, Any] = {"strategies": strategies,
                           "full_supervision_iou": float(np.mean(full)) if full else None,
                           "full_supervision_miou_2class": float(np.mean([f["miou"] for f in results["full"]]))
                           if full else None,
                           "full_supervision_steps": [f["steps"] for f in results["full"]],
                           "full_supervision_trace": [f["trace"] for f in results["full"]],
                           "full_supervision_patches": results["full"][0]["n_labeled"] if full else None,
                           "rf_baseline_iou_at_mid": _mean(rf.get(mid)), "rf_baseline_final_iou": _mean(rf.get(final)),
                           "rf_baseline_curve": {str(b): _mean(v) for b, v in sorted(rf.items())},
                           "initial_iou": {str(s): r["iou"] for s, r in sorted(results["initial"].items())},
                           "mid_budget": mid, "final_budget": final, "protocol": proto.to_dict(),
                           "wall_time_s": round(results.get("wall_s", 0.0), 1),
                           "pretrain": results.get("pretrain", {"mode": "none"}),
                           "class_name": results.get("class_name", "foreground"),
                           "self_train": results.get("self_train"), "reused_from": results.get("reused_from")}
    inits = [r["iou"] for r in results["initial"].values()]
    out["initial_iou_mean"] = float(np.mean(inits)) if inits else None
    out["initial_iou_sd"] = float(np.std(inits)) if inits else None
    out["targets"] = _targets(out)
    return out


#: what a summary repeats for the z-consensus scores (RF rows, 2D pixel features, keep their one score)
CONSENSUS_KEYS = ("strategies", "full_supervision_iou", "initial_iou", "initial_iou_mean", "initial_iou_sd", "targets")


def _has_consensus(results: dict) -> bool:
    rows = [r for res in results["strategy"] for r in res["rows"]]
    return all("iou_z" in r for r in [*rows, *results["initial"].values(), *results["full"]])


def _as_consensus(results: dict) -> dict:
    """``results`` with every U-Net score replaced by its z-consensus score (``iou_z``, ``miou_z``)."""
    def mixed(r: dict) -> dict:
        return {**r, "iou": r["iou_z"], **({"miou": r["miou_z"]} if "miou_z" in r else {})}
    return {**results, "initial": {s: mixed(r) for s, r in results["initial"].items()},
            "full": [mixed(f) for f in results["full"]],
            "strategy": [{**res, "rows": [mixed(r) for r in res["rows"]]} for res in results["strategy"]]}


def _best(others: dict) -> str | None:
    """The strategy closest to meeting both gain targets (its worse margin is the largest)."""
    def margin(v: dict) -> float:
        return min(v["gain_vs_random_at_mid"] - TARGETS["gain_at_mid"],
                   (v["gain_vs_random_final"] or -1.0) - TARGETS["gain_final"])
    return max(others, key=lambda k: margin(others[k]), default=None)


def _targets(s: dict) -> dict:
    """The benchmark's goals, each with the measured value and whether it was met."""
    others = {k: v for k, v in s["strategies"].items() if k != "random" and v["gain_vs_random_at_mid"] is not None}
    best = _best(others)
    rand = s["strategies"].get("random", {})
    t: dict[str, Any] = {"best_strategy": best}
    if rand.get("final_iou") is not None:
        t["random_final"] = {"value": round(rand["final_iou"], 4), "met": rand["final_iou"] >= TARGETS["random_final"]}
    if best is not None:
        b = others[best]
        t["gain_at_mid"] = {"value": b["gain_vs_random_at_mid"], "met": b["gain_vs_random_at_mid"] >= TARGETS["gain_at_mid"]}
        gf = b["gain_vs_random_final"]
        t["gain_final"] = {"value": gf, "met": gf is not None and gf >= TARGETS["gain_final"]}
        ltm = b["labels_to_match_random_final"]
        t["labels_to_match"] = {"value": ltm, "met": ltm is not None and ltm <= TARGETS["labels_to_match"]}
        full = s["full_supervision_iou"]
        if full and b["final_iou"] is not None:
            gap = 1.0 - b["final_iou"] / full
            t["final_vs_full"] = {"value": round(gap, 4), "met": gap <= TARGETS["final_vs_full"]}
    if rand.get("iou_at_mid") is not None and s["rf_baseline_iou_at_mid"] is not None:
        d = rand["iou_at_mid"] - s["rf_baseline_iou_at_mid"]
        t["unet_minus_rf_at_mid"] = {"value": round(d, 4), "met": d >= TARGETS["unet_minus_rf"]}
    if s.get("initial_iou_sd") is not None:
        t["initial_models"] = {"value": {"mean": round(s["initial_iou_mean"], 4), "sd": round(s["initial_iou_sd"], 4)},
                               "met": s["initial_iou_sd"] <= TARGETS["initial_sd"]
                               and s["initial_iou_mean"] >= TARGETS["initial_mean"]}
    return t


def markdown(summary: dict) -> str:
    mid, final = summary["mid_budget"], summary["final_budget"]
    lines = [f"| strategy | IoU @ {mid} | gain @ {mid} | IoU @ {final} | gain @ {final} | labels to match random | "
             f"paired gains @ {mid} | paired gains @ {final} | {summary.get('class_name', 'foreground')} in picks |",
             "|" + "---|" * 9]

    def f(v, pct=False):
        return "-" if v is None else (f"{v:+.1%}" if pct else f"{v:.3f}")
    for name, s in summary["strategies"].items():
        pm = " ".join(f"{v:+.0%}" for v in s["paired_gain_at_mid"].values()) or "-"
        pf = " ".join(f"{v:+.0%}" for v in s["paired_gain_final"].values()) or "-"
        ltm = "never" if s["labels_to_match_random_final"] is None else f"{s['labels_to_match_random_final']:.0%}"
        lines.append(f"| {name} | {f(s['iou_at_mid'])} | {f(s['gain_vs_random_at_mid'], True)} | {f(s['final_iou'])} | "
                     f"{f(s['gain_vs_random_final'], True)} | {ltm} | {pm} | {pf} | {f(s['mito_patch_share'])} |")
    lines.append(f"| rf_baseline | {f(summary['rf_baseline_iou_at_mid'])} | | {f(summary['rf_baseline_final_iou'])} "
                 "| | | | | |")
    if summary["full_supervision_iou"] is not None:
        lines.append(f"| full supervision ({summary['full_supervision_patches']} patches) | | | "
                     f"{f(summary['full_supervision_iou'])} | | | | | |")
    return "\n".join(lines)


def plot(path: Path, summary: dict, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = _table(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name in list(summary["strategies"]) + ["rf_baseline"]:
        curve = table.get(name, {})
        if not curve:
            continue
        xs = sorted(curve)
        vals = [list(curve[x].values()) for x in xs]
        style = dict(ls="--", marker="s", color="gray") if name == "rf_baseline" else dict(marker="o")
        line, = ax.plot(xs, [np.mean(v) for v in vals], label=name, **style)
        ax.fill_between(xs, [min(v) for v in vals], [max(v) for v in vals], color=line.get_color(), alpha=0.15)
    if summary["full_supervision_iou"] is not None:
        ax.axhline(summary["full_supervision_iou"], color="k", ls=":", label="full supervision")
    ax.set_xlabel("labeled patches")
    ax.set_ylabel(f"test IoU ({summary.get('class_name', 'foreground')})")
    ax.set_title(f"Active learning ({summary['protocol']['name']}): mean, band = min..max over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def write_outputs(out_dir: Path, results: dict, proto: Protocol) -> dict:
    """Write every output file; returns the summary."""
    out_dir = Path(out_dir)
    rows = curve_rows(results)
    _write_csv(out_dir / "curves.csv", rows, CURVE_COLUMNS)
    _write_csv(out_dir / "details.csv", [d for r in results["strategy"] for d in r["details"]], DETAIL_COLUMNS)
    summary = summarize(results, proto)
    _atomic(out_dir / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    plot(out_dir / "curves.png", summary, rows)
    return summary
