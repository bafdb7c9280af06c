"""Where a traced JAX step spends its accelerator time: kernels grouped by kind and by HLO op.

    python -m scripts.trace_summary TRACE_DIR [--steps 3] [--top 30]

Reads the Perfetto trace that ``jax.profiler.trace(..., create_perfetto_trace=True)`` writes
(``scripts.benchmark --trace DIR`` makes one per JAX row) and prints, per traced step: the
device time by kind (matmul, convolution, attention, Triton fusion, reduction fusion, other
fusion, copies), the busy fraction of the step's wall time (the rest is launch gaps and host
work), and the most expensive HLO ops with their kernels. Device events are those of the
trace's ``/device:GPU:*`` processes (their ``hlo_op`` argument names the HLO instruction of
the kernel; the optimised HLO text beside the trace, ``hlo.txt``, says what it computes).
A trace with no device process (CPU) reports the host's XLA op events instead.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os

# Kernel kind by substrings of the kernel or HLO op name, first match wins.
KINDS = (
    ("attention", ("fmha", "flash", "attention", "sdpa")),
    (
        "convolution",
        (
            "conv-",
            "conv_",
            "convolution",
            "fprop",
            "dgrad",
            "wgrad",
            "implicitgemm",
            "implicit_gemm",
            "cudnn",
            "nhwcaddpadding",
        ),
    ),
    ("matmul", ("gemm", "cublas", "cutlass", "matmul", "dot", "xmma", "nvjet", "gemv")),
    ("triton fusion", ("triton",)),
    ("copy/memset", ("memcpy", "memset", "copy")),
    ("reduction fusion", ("reduce", "reduction")),
)


def kind_of(*names: str) -> str:
    text = " ".join(n.lower() for n in names if n)
    for kind, keys in KINDS:
        if any(k in text for k in keys):
            return kind
    return "other fusion" if "fusion" in text else "other"


def load_events(trace_dir: str) -> tuple[list[dict], dict[int, str]]:
    paths = sorted(
        glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    )
    if not paths:
        raise FileNotFoundError(
            f"no perfetto_trace.json.gz under {trace_dir}: trace with "
            "jax.profiler.trace(dir, create_perfetto_trace=True)"
        )
    with gzip.open(paths[-1], "rt") as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    procs = {
        e["pid"]: e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    return events, procs


def summarize(trace_dir: str, steps: int = 3, top: int = 30) -> str:
    events, procs = load_events(trace_dir)
    device = {pid for pid, name in procs.items() if "/device:" in name and "CPU" not in name}
    spans = [e for e in events if e.get("ph") == "X" and e.get("dur") is not None]
    dev = [e for e in spans if e["pid"] in device]
    lines = [f"trace: {trace_dir}", f"processes: {sorted(procs.values())}"]
    if not dev:  # CPU: XLA's per-op host events carry an hlo_op argument
        dev = [e for e in spans if "hlo_op" in e.get("args", {})]
        lines.append("no device process: host XLA op events")
    if not dev:
        lines.append("no kernel or XLA op events in the trace")
        return "\n".join(lines)
    for e in dev[:3]:
        lines.append(f"sample event: {json.dumps(e)[:400]}")
    by_kind: dict[str, float] = collections.Counter()
    by_op: dict[str, float] = collections.Counter()
    count: dict[str, int] = collections.Counter()
    kernels: dict[str, set] = collections.defaultdict(set)
    for e in dev:
        args = e.get("args", {})
        op = args.get("hlo_op") or e["name"]
        if op.startswith("command_buffer"):  # a CUDA graph of many kernels: name the kernel
            op = e["name"]
        k = kind_of(e["name"], op)
        by_kind[k] += e["dur"]
        by_op[op] += e["dur"]
        count[op] += 1
        kernels[op].add(e["name"][:60])
    busy = sum(by_kind.values())
    t0 = min(e["ts"] for e in dev)
    t1 = max(e["ts"] + e["dur"] for e in dev)
    lines.append(
        f"device time per step {busy / steps / 1e3:.2f} ms over a span of "
        f"{(t1 - t0) / steps / 1e3:.2f} ms per step (busy {busy / max(t1 - t0, 1e-9):.0%}); "
        f"{len(dev) // steps} kernels per step"
    )
    lines.append("")
    lines.append("| kind | ms/step | share |")
    lines.append("|---|---|---|")
    for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {k} | {v / steps / 1e3:.2f} | {v / busy:.1%} |")
    lines.append("")
    lines.append("| HLO op | kind | ms/step | calls/step | kernels |")
    lines.append("|---|---|---|---|---|")
    for op, v in by_op.most_common(top):
        ks = sorted(kernels[op])
        lines.append(
            f"| {op[:60]} | {kind_of(*ks, op)} | {v / steps / 1e3:.3f} | "
            f"{count[op] / steps:g} | {'; '.join(ks)[:120]} |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("trace_dir")
    p.add_argument("--steps", type=int, default=3, help="steps the trace covers")
    p.add_argument("--top", type=int, default=30)
    a = p.parse_args(argv)
    print(summarize(a.trace_dir, a.steps, a.top))


if __name__ == "__main__":
    main()
