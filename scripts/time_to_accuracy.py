"""Wall time to a test accuracy (default 90%) of the Fashion-MNIST recipe, jaxbones and PyTorch.

Runs ``experiments.fashion_mnist`` (jaxbones) and ``scripts.torch_fashion_mnist`` (the same
recipe in PyTorch) one after the other, as separate processes, in the order given (e.g.
``--order jax,torch,jax,torch`` alternates them so that a change of machine load hits
both), and stamps every evaluation line each writes with the seconds since its launch,
measured here by one clock for both: imports, data loading, jaxbones' compilation (the
persistent compilation cache is off unless ``--compile-cache``) and the evaluations count.
A run stops at its first evaluation at or above ``--target`` (``--run-to-end`` trains the
whole schedule); with ``--stop-when-behind`` a run also stops once it has run longer than an
earlier run took to the target, so it cannot be faster (its row says so). Evaluations come
once per epoch (468 steps of batch 128) unless ``--eval-every`` says otherwise.

Prints one row per run and appends it as JSON to ``--out``, with the 1-minute load average
at launch and its peak during the run. A run launched with the load above the core count is
marked ``loaded``: its time is not a result. The peak is not the test: each run's own
threads lift the load above the cores while it trains.

Usage (an idle machine; about an hour on 2 cores):
  python -m scripts.time_to_accuracy --order jax,torch,jax,torch
Quick check that both run (not a measurement):
  python -m scripts.time_to_accuracy --eval-every 40 --max-evals 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from scripts.benchmark import wait_for_idle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _command(framework: str, workdir: str, args) -> tuple[list[str], str]:
    """(argv, path of the JSON lines file whose 'eval' rows carry 'accuracy')."""
    py = sys.executable
    if framework == "jax":
        cmd = [
            py,
            "-m",
            "experiments.fashion_mnist",
            f"--config.workdir={workdir}",
            f"--config.num_epochs={args.epochs}",
            "--config.plot=False",
            "--config.progress=False",
        ]
        if not args.compile_cache:
            cmd.append("--config.compile_cache=")
        if args.eval_every:
            cmd.append(f"--config.evals.eval.every={args.eval_every}")
        if args.data_dir:
            cmd.append(f"--config.data_dir={args.data_dir}")
        return cmd, os.path.join(workdir, "metrics.jsonl")
    if framework == "torch":
        out = os.path.join(workdir, "metrics.jsonl")
        cmd = [py, "-m", "scripts.torch_fashion_mnist", f"--epochs={args.epochs}", f"--out={out}"]
        if args.eval_every:
            cmd.append(f"--eval-every={args.eval_every}")
        return cmd, out
    raise ValueError(f"framework {framework!r}: use jax or torch")


def _eval_rows(path: str, seen: int) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if r.get("split") == "eval" and "accuracy" in r][seen:]


def run_one(framework: str, args, behind_after: float | None = None) -> dict:
    """One run; it stops at the target, or ``behind_after`` seconds from launch when given."""
    workdir = tempfile.mkdtemp(prefix=f"tta_{framework}_")
    cmd, metrics = _command(framework, workdir, args)
    load0 = os.getloadavg()[0]
    log = open(os.path.join(workdir, "stdout.log"), "w")  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    evals, reached, peak_load = [], None, load0
    while True:
        done = proc.poll() is not None
        for row in _eval_rows(metrics, len(evals)):
            row["seen_s"] = round(time.perf_counter() - t0, 1)
            evals.append(row)
            print(
                f"  {framework} step {row['step']}: accuracy {row['accuracy']:.4f} at "
                f"{row['seen_s']} s",
                flush=True,
            )
            if reached is None and row["accuracy"] >= args.target:
                reached = row
        peak_load = max(peak_load, os.getloadavg()[0])
        stop = (reached is not None and not args.run_to_end) or (
            args.max_evals and len(evals) >= args.max_evals
        )
        behind = (
            reached is None and behind_after is not None and time.perf_counter() - t0 > behind_after
        )
        if done or stop or behind:
            break
        time.sleep(0.2)
    if proc.poll() is None:
        proc.terminate()
        proc.wait(60)
    log.close()
    cores = os.cpu_count() or 1
    result = {
        "framework": framework,
        "target": args.target,
        "seconds_to_target": reached["seen_s"] if reached else None,
        "step_at_target": reached["step"] if reached else None,
        "best_accuracy": max((r["accuracy"] for r in evals), default=None),
        # stopped without the target after running longer than an earlier run needed for it
        "stopped_behind_s": round(behind_after, 1) if behind else None,
        "evals": [(r["step"], round(r["accuracy"], 4), r["seen_s"]) for r in evals],
        "returncode": proc.returncode,
        "load_at_start": round(load0, 2),
        "peak_load": round(peak_load, 2),
        "cores": cores,
        # the run's own threads (XLA's, grain's, torch's) lift the load average above the
        # cores while it trains, so the load at launch is the test for other jobs
        "loaded": load0 > cores,
        "workdir": workdir,
        "command": " ".join(cmd),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if proc.returncode not in (0, None, -15) and not evals:
        print(f"  {framework} failed (exit {proc.returncode}); see {workdir}/stdout.log")
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--order", default="jax,torch", help="comma-separated: jax, torch")
    p.add_argument("--target", type=float, default=0.90)
    p.add_argument("--epochs", type=float, default=10.0, help="the schedule's length")
    p.add_argument("--eval-every", type=int, default=0, help="steps (0: once per epoch)")
    p.add_argument("--max-evals", type=int, default=0, help="stop a run after N evaluations")
    p.add_argument("--run-to-end", action="store_true")
    p.add_argument(
        "--stop-when-behind",
        action="store_true",
        help="stop a run once it has run longer than an earlier run took to the target",
    )
    p.add_argument("--compile-cache", action="store_true", help="keep jaxbones' XLA cache")
    p.add_argument("--data-dir", default="", help="jaxbones' tfds data_dir")
    p.add_argument("--out", default="/tmp/time_to_accuracy.jsonl")
    p.add_argument(
        "--wait_idle", type=float, default=180, help="seconds to wait for load < cores at most"
    )
    args = p.parse_args(argv)
    from jaxbones.data import ensure_local_dataset

    # the one-off build of the tfds copy (about a minute) is not part of either run
    ensure_local_dataset("fashion_mnist", args.data_dir or None)
    results = []
    for framework in args.order.split(","):
        # the load average still counts the previous run's threads for about a minute
        waited = wait_for_idle(os.cpu_count() or 1, args.wait_idle)
        print(f"{framework}: running (after {waited:.0f} s waiting for the load)", flush=True)
        times = [r["seconds_to_target"] for r in results if r["seconds_to_target"] is not None]
        behind_after = min(times) if args.stop_when_behind and times else None
        res = run_one(framework.strip(), args, behind_after)
        results.append(res)
        with open(args.out, "a") as f:
            f.write(json.dumps(res) + "\n")
        t = res["seconds_to_target"]
        reach = f"{t:.0f} s" if t is not None else "not reached"
        if res["stopped_behind_s"] is not None:
            reach = f"not reached in {res['stopped_behind_s']:.0f} s (stopped: behind)"
        print(
            f"{framework}: {reach} to "
            f"{args.target:.0%} (step {res['step_at_target']}), best {res['best_accuracy']}, "
            f"load {res['load_at_start']} -> peak {res['peak_load']} on {res['cores']} cores"
            f"{' (LOADED: not a result)' if res['loaded'] else ''}",
            flush=True,
        )
    return results


if __name__ == "__main__":
    main()
