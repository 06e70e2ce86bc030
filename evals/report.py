"""Reports readable without opening JSON: a terminal table of a run's summary, and plots
(pass@K curves; pass@1 by ReST-EM iteration). Plots need matplotlib (the `plots` extra).
`write_atomic` writes a report file whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

METRIC_ORDER = ("accuracy", "pass@1", "pass@10", "pass@100")


def write_atomic(path: Path, text: str) -> None:
    """Write `path` whole or not at all (a `.partial` file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def format_summary(summary: dict[str, Any], title: str = "") -> str:
    """A table: counts, pass@K and maj@K, verdicts, then each breakdown."""
    rows: list[tuple[str, str]] = []
    rows.append(("lines", f"{summary['count']} ({summary['invalid']} invalid)"))
    if "tasks" in summary:
        rows.append(("tasks", str(summary["tasks"])))
    metrics = [k for k in METRIC_ORDER if k in summary] + sorted(
        k for k in summary if k.startswith("maj@"))
    rows += [(k, _pct(summary[k])) for k in metrics]
    rows.append(("verdicts", ", ".join(f"{v} {n}" for v, n in summary["verdicts"].items())))
    for kind, groups in summary.get("breakdown", {}).items():
        if kind == "task_average":
            rows.append(("task average", _pct(groups)))
            continue
        for value, cell in groups.items():
            rows.append((f"{kind} {value}", f"{_pct(cell['pass@1'])}  ({cell['tasks']} tasks)"))
    width = max(len(name) for name, _ in rows)
    lines = [title] if title else []
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    """A results dict (evals.score.Summary.as_dict) as name -> number, for experiment trackers:
    samples, accuracy, pass@K, maj@K, verdict/<VERDICT> (counts), <kind>/<value>/pass@1 for
    each breakdown (e.g. level/5/pass@1) and task_average."""
    out: dict[str, float] = {"samples": results["count"]}
    if results.get("accuracy") is not None:
        out["accuracy"] = results["accuracy"]
    out.update({k: v for k, v in results.items() if k.startswith(("pass@", "maj@"))})
    out.update({f"verdict/{v}": n for v, n in results["verdicts"].items()})
    for kind, groups in results.get("breakdown", {}).items():
        if kind == "task_average":
            out[kind] = groups
            continue
        out.update({f"{kind}/{value}/pass@1": cell["pass@1"] for value, cell in groups.items()})
    return out


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned table (numbers as given, None as '-')."""
    cells = [header] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells[1:]]
    return "\n".join(out)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def plot_pass_at_k(curves: dict[str, list[tuple[int, float]]], path: Path,
                   title: str = "pass@K") -> Path:
    """One line per model: pass@K (%) against K on a log axis."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for label, curve in curves.items():
        axes.plot([k for k, _ in curve], [100 * v for _, v in curve], marker="o", label=label)
    axes.set_xscale("log", base=2)
    axes.set(xlabel="K (samples)", ylabel="pass@K (%)", title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def plot_iterations(rows: list[dict[str, Any]], path: Path, title: str = "ReST-EM") -> Path:
    """Train reward and test pass@1 (%) by iteration (0 = base), as in the paper's Figs. 2/4."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for key, label in (("train_reward", "train reward"), ("val_pass@1", "validation pass@1"),
                       ("test_pass@1", "test pass@1")):
        points = [(r["iteration"], 100 * r[key]) for r in rows if r.get(key) is not None]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", label=label)
    axes.set(xlabel="iteration (0 = base model)", ylabel="%", title=title)
    axes.set_xticks(sorted({r["iteration"] for r in rows}))
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise RuntimeError("plots need matplotlib: pip install 'restem[plots]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path
