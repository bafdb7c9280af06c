"""Generates the README table of pretrained tags from the registry: tag, where the file comes
from, its license, the published ImageNet-1k top-1 and the top-1 that ``scripts.validate``
measured for it.

Usage (from the repository root; reads the registry only, builds nothing, seconds):

    python -m scripts.pretrained_table            # print the table and write it into README.md
    python -m scripts.pretrained_table --no-write # print only

The measured column is kept from README's current table (fill it in with the results of
``python -m scripts.validate --model TAG``); everything else is regenerated. The table lands
between the ``<!-- pretrained:start -->`` / ``<!-- pretrained:end -->`` markers of README.md
(appended if absent); tests/test_pretrained_table.py fails when it is out of date.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jaxbones
from jaxbones.registry import PretrainedCfg, get_pretrained_cfg
from scripts.model_table import write_atomically, write_between_markers

START, END = "<!-- pretrained:start -->", "<!-- pretrained:end -->"
README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
HEADER = (
    "| tag | source | license | published top-1 | measured top-1 (scripts.validate) |\n"
    "|---|---|---|---:|---:|\n"
)


def _top1(cfg: PretrainedCfg) -> str:
    return "—" if cfg.top1 is None else f"{cfg.top1:.2f}"


def parse_measured(text: str) -> dict[str, str]:
    """tag -> the measured top-1 cell of the table between the markers of ``text`` (non-empty
    cells only)."""
    if START not in text or END not in text:
        return {}
    body = text.split(START, 1)[1].split(END, 1)[0]
    out = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`") and cells[4]:
            out[cells[0].strip("`")] = cells[4]
    return out


def render(tags: list[str], measured: dict[str, str] | None = None) -> str:
    """The table of ``tags`` in the given order, with the ``measured`` cells kept."""
    measured = measured or {}
    rows = []
    for tag in tags:
        c = get_pretrained_cfg(tag)
        default = get_pretrained_cfg(c.model).tag == tag
        name = f"`{tag}`" + (" (default)" if default else "")
        rows.append(
            f"| {name} | {c.source} | {c.license or '—'} | {_top1(c)} | {measured.get(tag, '')} |"
        )
    return HEADER + "\n".join(rows) + "\n"


def ordered_tags() -> list[str]:
    """Every tag, grouped by model (models sorted), each model's default first."""
    by_model: dict[str, list[str]] = {}
    for tag in jaxbones.list_pretrained():
        by_model.setdefault(tag.split(".", 1)[0], []).append(tag)
    out = []
    for model, tags in by_model.items():
        default = get_pretrained_cfg(model).tag
        out += [default] + [t for t in tags if t != default]
    return out


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--no-write", action="store_true", help="print only, leave README.md")
    args = p.parse_args(argv)
    text = README.read_text()
    table = render(ordered_tags(), parse_measured(text))
    print(table)
    if not args.no_write:
        write_atomically(README, write_between_markers(text, table, START, END))
        print(f"wrote {table.count(chr(10)) - 2} tags into {README}", file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
