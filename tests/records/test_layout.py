from __future__ import annotations

from pathlib import Path

import pytest

from workflow.records.layout import LayoutError, load_layout, load_layout_file
from workflow.resources import templates_dir


@pytest.mark.parametrize("kind", ["compounding", "administration"])
def test_shipped_layouts_load(kind: str) -> None:
    layout = load_layout(kind)
    assert layout.kind == kind
    assert layout.page_size in {"A4", "Letter"}
    assert abs(sum(layout.row_widths) - 1) < 0.01
    assert layout.sections


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = (templates_dir() / "records" / "compounding.yaml").read_text()
    assert old in text
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("size: A4", "size: A3", "page.size"),
        ("widths: [0.30, 0.46, 0.24]", "widths: [0.30, 0.46, 0.44]", "rows.widths"),
        ('right: "Page {page} of {pages}"', 'right: "{page} {__class__}"', "footer.right"),
        ("standard: Helvetica\n", "standard: Comic Sans\n", "fonts.regular.standard"),
        ("  body: 8.5", "  body: huge", "sizes.body"),
        ("kind_title: Compounding record", "kind_title: Compounding record\nextra: 1", "extra"),
        # An unquoted comma splits a flow mapping: the title would silently lose its tail.
        (
            'title: "Quality checks (visual inspection)"',
            "title: Quality (visual, inspection)",
            "sections[7].inspection)",
        ),
    ],
)
def test_bad_layout_names_file_line_and_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    path = _broken(tmp_path, old, new)
    with pytest.raises(LayoutError) as info:
        load_layout_file(path)
    assert info.value.exit_code == 2
    issue = info.value.issues[0]
    assert issue.file == str(path)
    assert f"{key}:" in issue.message
    line = path.read_text().splitlines()[issue.line - 1]
    assert key.rsplit(".", 1)[-1].split("[")[0] in line


def test_malformed_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    with pytest.raises(LayoutError, match=r"bad\.yaml:"):
        load_layout_file(bad)
    with pytest.raises(LayoutError, match="cannot read"):
        load_layout_file(tmp_path / "absent.yaml")
