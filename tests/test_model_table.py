"""scripts/model_table.py: XLA-measured compute against torchvision's published operation
counts (multiply-adds) on two small models, the claim line and the README markers."""

import pytest
import torchvision

import jaxbones
from scripts import model_table


@pytest.fixture(scope="module")
def rows():
    return model_table.table_rows(["resnet18", "vgg11"])


def test_measured_compute_matches_torchvision_meta(rows):
    # torchvision's weight metadata ``_ops`` is GFLOPS counted as multiply-adds (fvcore,
    # padding taps included); XLA skips the taps on zero padding (3-7% fewer on these
    # CNNs) and adds norms/activations, hence 10% of slack.
    meta = {
        "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["_ops"],
        "vgg11": torchvision.models.VGG11_Weights.IMAGENET1K_V1.meta["_ops"],
    }
    for r in rows:
        assert r["params"] == jaxbones.model_info(r["name"])["num_params"]
        assert r["gflops"] == pytest.approx(2 * r["gmacs"])
        assert r["gmacs"] == pytest.approx(meta[r["name"]], rel=0.10), r
        assert r["reference"] == "torchvision.models." + r["name"]
        assert r["resolution"] == "224x224"


def test_render_and_readme_markers(rows):
    table = model_table.render(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| model | params |") and len(lines) == 4
    assert "| `vgg11` | 132,863,336 | 224x224 |" in table
    assert "Claim check" not in table  # resnet34 / vgg19 not measured here
    readme = "# title\n\ntext\n"
    once = model_table.write_between_markers(readme, table)
    assert once.startswith(readme.rstrip("\n"))
    assert once.count(model_table.START) == once.count(model_table.END) == 1
    twice = model_table.write_between_markers(once + "\n## after\n", "| new |\n")
    assert "| new |" in twice and "vgg11" not in twice and twice.endswith("## after\n")
    # a partial run (--missing) reads the rows back as they were rendered
    back = model_table.parse_rows(once)
    assert [r["name"] for r in back] == [r["name"] for r in rows]
    assert model_table.render(back) == table


def test_claim_line_verdicts():
    def row(name, gmacs):
        return {"name": name, "gmacs": gmacs}

    ok = model_table.claim_line([row("resnet34", 3.66), row("vgg19", 19.63)])
    assert "The claim holds" in ok and "5.4x" in ok
    bad = model_table.claim_line([row("resnet34", 3.66), row("vgg19", 39.3)])
    assert "does not hold" in bad
    # both within 10% but the ratio is off by more: does not hold either
    skew = model_table.claim_line([row("resnet34", 3.3), row("vgg19", 21.5)])
    assert "does not hold" in skew
    assert model_table.claim_line([row("resnet34", 3.66)]) == ""
