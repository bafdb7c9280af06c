"""scripts/pretrained_table.py: README's table of pretrained tags is the registry's, measured
cells survive regeneration."""

import jaxbones
from scripts import pretrained_table as pt


def test_readme_table_is_up_to_date():
    text = pt.README.read_text()
    assert pt.START in text and pt.END in text, "run `python -m scripts.pretrained_table`"
    current = text.split(pt.START, 1)[1].split(pt.END, 1)[0].lstrip("\n")
    expected = pt.render(pt.ordered_tags(), pt.parse_measured(text))
    assert current == expected, (
        "README's tag table is stale: run python -m scripts.pretrained_table"
    )


def test_every_tag_once_default_first():
    tags = pt.ordered_tags()
    assert sorted(tags) == jaxbones.list_pretrained() and len(set(tags)) == len(tags)
    i = tags.index("resnet50.a1_in1k")
    assert tags[i - 1].split(".")[0] != "resnet50"  # the default opens its model's rows


def test_measured_cells_survive_and_rows_render():
    tags = ["resnet50.tv_in1k", "resnet50.a1_in1k", "sam_vit_b.sa1b"]
    table = pt.render(tags)
    assert "| `resnet50.tv_in1k` | torchvision | bsd-3-clause | 76.13 |  |" in table
    assert "| `resnet50.a1_in1k` (default) | timm | apache-2.0 | 80.38 |  |" in table
    assert (
        "| `sam_vit_b.sa1b` (default) | facebookresearch/segment-anything | apache-2.0 | — |"
        in (table)
    )
    filled = table.replace(
        "| `resnet50.tv_in1k` | torchvision | bsd-3-clause | 76.13 |  |",
        "| `resnet50.tv_in1k` | torchvision | bsd-3-clause | 76.13 | 76.11 |",
    )
    readme = pt.write_between_markers("# t\n", filled, pt.START, pt.END)
    assert pt.parse_measured(readme) == {"resnet50.tv_in1k": "76.11"}
    again = pt.render(tags, pt.parse_measured(readme))
    assert again == filled
