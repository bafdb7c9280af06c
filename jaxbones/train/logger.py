"""Metrics and logging on process 0: console progress with ETA, JSON lines, TensorBoard,
throughput (images/s per device), compile time, MFU, and a PNG of the curves at the end.

``MetricLogger(workdir, total_steps, enabled)``:
  write(step, split, metrics): one JSON line in ``metrics.jsonl`` + TensorBoard scalars.
  progress(step, metrics): a one-line bar ``[####....] step/total  loss ... ETA``.
  plot(): ``curves.png``, every logged metric (train loss, lr, each evaluator's) per split.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

# logged per row but not worth a panel
_NOT_PLOTTED = ("step", "split", "images_per_sec_per_device", "mfu", "bad_steps", "grad_norm")


def plotted_series(history: list[dict]) -> dict[str, list[str]]:
    """{metric: [splits that log it]} for ``curves.png``, in the order first logged; the
    'compile' row is not a curve."""
    out: dict[str, list[str]] = {}
    for row in history:
        if row["split"] == "compile":
            continue
        for key in row:
            if key not in _NOT_PLOTTED and row["split"] not in out.setdefault(key, []):
                out[key].append(row["split"])
    return out


class MetricLogger:
    def __init__(self, workdir: str, total_steps: int, enabled: bool = True, progress: bool = True):
        self.enabled = enabled and bool(workdir)
        self.main = enabled
        self.console = enabled and progress
        self.total = total_steps
        self.t0 = None
        self.s0 = 0
        self.history: list[dict] = []
        self.workdir = os.path.expanduser(workdir) if workdir else ""
        self.tb = None
        self.jsonl = None
        if self.enabled:
            os.makedirs(self.workdir, exist_ok=True)
            self.jsonl = open(  # noqa: SIM115 - kept open for the whole run
                os.path.join(self.workdir, "metrics.jsonl"), "a"
            )
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(os.path.join(self.workdir, "tb"))

    def start(self, step: int):
        self.t0, self.s0 = time.perf_counter(), step

    def write(self, step: int, split: str, metrics: dict):
        row = {"step": int(step), "split": split}
        row.update({k: float(v) for k, v in metrics.items()})
        self.history.append(row)
        if self.jsonl:
            self.jsonl.write(json.dumps(row) + "\n")
            self.jsonl.flush()
        if self.tb:
            for k, v in row.items():
                if k not in ("step", "split") and math.isfinite(v):
                    self.tb.add_scalar(f"{split}/{k}", v, step)

    def info(self, msg: str):
        if self.main:
            print(msg, flush=True)

    def progress(self, step: int, metrics: dict):
        if not self.console:
            return
        done = step - self.s0
        el = time.perf_counter() - (self.t0 or time.perf_counter())
        eta = el / max(done, 1) * (self.total - step)
        frac = step / max(self.total, 1)
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        shown = " ".join(
            f"{k} {v:.4g}"
            for k, v in metrics.items()
            if k in ("loss", "accuracy", "lr", "images_per_sec_per_device", "mfu")
        )
        sys.stdout.write(
            f"[{bar}] {step}/{self.total} {shown} ETA {int(eta) // 60}:{int(eta) % 60:02d}\n"
        )
        sys.stdout.flush()

    def plot(self) -> str | None:
        """``curves.png``: one panel per metric (every evaluator's, the train loss and the
        learning rate), one line per split that logs it."""
        if not self.enabled or not self.history:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        series = plotted_series(self.history)
        cols = min(len(series), 4)
        rows = math.ceil(len(series) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
        for ax in axes.flat[len(series) :]:
            ax.axis("off")
        for ax, (key, splits) in zip(axes.flat, series.items(), strict=False):
            for split in splits:
                pts = [
                    (r["step"], r[key]) for r in self.history if r["split"] == split and key in r
                ]
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker=None if split == "train" else ".", label=split)
            ax.set_xlabel("step")
            ax.set_title(key)
            ax.legend()
        fig.tight_layout()
        path = os.path.join(self.workdir, "curves.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def close(self):
        if self.jsonl:
            self.jsonl.close()
        if self.tb:
            self.tb.close()
