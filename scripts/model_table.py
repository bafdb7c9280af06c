"""Generates the README table of every registered model: parameters, compute, reference.

Usage (from the repository root; compiles every model once on the host, ~minutes on CPU):

    python -m scripts.model_table            # print the table and write it into README.md
    python -m scripts.model_table --no-write # print only
    python -m scripts.model_table 'vgg*'     # a subset (fnmatch pattern)
    python -m scripts.model_table --missing  # measure only models not yet in README's table

Compute is XLA's own count: ``jax.jit(eval forward).lower(x).compile().cost_analysis()
['flops']`` at batch 1 and the model's default resolution. XLA counts a multiply-add as two
flops, also counts the elementwise work of norms and activations, and skips the
multiply-adds a convolution window spends on zero padding (a 3x3 conv on a 7x7 map counts
361 of the 441 taps per channel pair), so it reads 3-7% below the fvcore-style counts that
papers and torchvision quote for CNNs. Papers usually quote multiply-adds, so the table gives
GMACs = flops / 2 as well. The table lands between the
``<!-- models:start -->`` / ``<!-- models:end -->`` markers of README.md (appended if absent).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Any

import jax

import jaxbones
from jaxbones.registry import create_model, get_entry

START, END = "<!-- models:start -->", "<!-- models:end -->"
README = pathlib.Path(__file__).resolve().parent.parent / "README.md"

# The claim in the documents this project started from (multiply-adds, 224 px).
CLAIM = {"resnet34": 3.6, "vgg19": 19.6}


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax returns one dict per device program
        cost = cost[0]
    return float(cost["flops"])


def measure(name: str) -> dict[str, Any]:
    """Parameters, eval-forward flops at batch 1 and default resolution, and the reference."""
    info = jaxbones.model_info(name)
    model = create_model(name)
    x = jaxbones.registry.dummy_input(name, model)
    h, w = x.shape[1:3]
    variables = jaxbones.registry.init_shapes(name)
    kwargs = jaxbones.registry.init_kwargs(model)

    def forward(v, x):
        # MAE draws its mask from the 'mask' stream; other models ignore the key.
        return model.apply(v, x, train=False, rngs={"mask": jax.random.PRNGKey(0)}, **kwargs)

    # The flop count comes from XLA's HLO cost analysis; LLVM's backend optimisation level
    # does not change it, only the compile time.
    fast = jaxbones.registry.FAST_COMPILE
    flops = _flops(jax.jit(forward, compiler_options=fast).lower(variables, x).compile())
    return {
        "name": name,
        "params": info["num_params"],
        "resolution": f"{h}x{w}",
        "gflops": flops / 1e9,
        "gmacs": flops / 2e9,
        "reference": get_entry(name).reference,
    }


def table_rows(names: list[str], progress: bool = False) -> list[dict[str, Any]]:
    rows = []
    for i, name in enumerate(names):
        if progress:
            print(f"[{i + 1}/{len(names)}] {name}", file=sys.stderr, flush=True)
        rows.append(measure(name))
    return rows


def claim_line(rows: list[dict[str, Any]], tol: float = 0.10) -> str:
    """Whether the documents' ResNet-34 vs VGG-19 multiply-add figures hold (within ``tol``
    relative), from the measured rows; empty when either model is not in the table."""
    by = {r["name"]: r for r in rows}
    if not all(n in by for n in CLAIM):
        return ""
    parts, holds = [], True
    for n, claimed in CLAIM.items():
        got = by[n]["gmacs"]
        ok = abs(got - claimed) <= tol * claimed
        holds &= ok
        parts.append(f"{n} {got:.2f} GMACs (claimed {claimed})")
    ratio = by["vgg19"]["gmacs"] / by["resnet34"]["gmacs"]
    claimed_ratio = CLAIM["vgg19"] / CLAIM["resnet34"]
    holds &= abs(ratio - claimed_ratio) <= tol * claimed_ratio
    verdict = "holds" if holds else "does not hold"
    return (
        f"Claim check (computed from the rows above): {'; '.join(parts)}; VGG-19 needs "
        f"{ratio:.1f}x the multiply-adds of ResNet-34 (claimed {claimed_ratio:.1f}x). The claim "
        f"{verdict} within {tol:.0%} (XLA skips the multiply-adds on zero padding, which "
        "papers count)."
    )


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | params | input | GFLOPs | GMACs | verified against |",
        "|---|---:|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['name']}` | {r['params']:,} | {r['resolution']} | {r['gflops']:.2f} | "
            f"{r['gmacs']:.2f} | `{r['reference'] or 'none'}` |"
        )
    claim = claim_line(rows)
    return "\n".join(lines) + ("\n\n" + claim if claim else "") + "\n"


def parse_rows(text: str) -> list[dict[str, Any]]:
    """The rows of a table ``render`` wrote (between the markers of ``text``), so that a partial
    run can keep the rows it does not re-measure."""
    if START not in text or END not in text:
        return []
    body = text.split(START, 1)[1].split(END, 1)[0]
    rows = []
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or not cells[0].startswith("`"):
            continue
        ref = cells[5].strip("`")
        rows.append(
            {
                "name": cells[0].strip("`"),
                "params": int(cells[1].replace(",", "")),
                "resolution": cells[2],
                "gflops": float(cells[3]),
                "gmacs": float(cells[4]),
                "reference": None if ref == "none" else ref,
            }
        )
    return rows


def write_atomically(path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file renamed into place, so a run killed
    mid-write leaves the old file, never a truncated one (these are tracked files)."""
    path = str(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_between_markers(text: str, table: str, start: str = START, end: str = END) -> str:
    """``text`` with ``table`` between the ``start`` / ``end`` markers (the model table's by
    default; appended when absent)."""
    block = f"{start}\n{table}{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        return head + block + tail
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern of model names")
    p.add_argument("--no-write", action="store_true", help="print only, leave README.md")
    p.add_argument(
        "--missing",
        action="store_true",
        help="keep README's rows of registered models and measure only the missing ones",
    )
    args = p.parse_args(argv)
    names = jaxbones.list_models(args.pattern)
    if not names:
        raise SystemExit(f"no registered model matches {args.pattern!r}; see list_models()")
    if args.missing:
        registered = jaxbones.list_models()
        kept = {r["name"]: r for r in parse_rows(README.read_text()) if r["name"] in registered}
        new = {r["name"]: r for r in table_rows([n for n in names if n not in kept], True)}
        rows = [{**kept, **new}[n] for n in registered if n in kept or n in new]
        names = list(new)
    else:
        rows = table_rows(names, progress=True)
    table = render(rows)
    print(table)
    if not args.no_write:
        write_atomically(README, write_between_markers(README.read_text(), table))
        print(f"wrote {len(names)} rows into {README}", file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
