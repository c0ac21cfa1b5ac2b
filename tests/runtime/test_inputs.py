"""collect_paths: folders (recursive or not), files, @lists, .txt lists, stdin; order and errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from symnets_deploy.errors import UsageError
from symnets_deploy.inputs import collect_paths, read_path_list, scan_folder


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    _touch(tmp_path, "b.jpg", "A.PNG", "c.JpEg", "readme.md", "sub/z.webp", "sub/deeper/y.TIFF", "sub/x.gif", ".hidden.jpg", ".cache/h.jpg", "sub/._mac.jpg")
    return tmp_path


def _names(paths, root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_scan_is_recursive_sorted_case_insensitive_and_skips_hidden(tree: Path) -> None:
    assert _names(scan_folder(tree), tree) == ["A.PNG", "b.jpg", "c.JpEg", "sub/deeper/y.TIFF", "sub/x.gif", "sub/z.webp"]


def test_no_recursive_scans_only_the_top_folder(tree: Path) -> None:
    assert _names(collect_paths([tree], recursive=False), tree) == ["A.PNG", "b.jpg", "c.JpEg"]


def test_order_follows_the_inputs_and_duplicates_are_dropped(tree: Path) -> None:
    paths = collect_paths([tree / "sub", tree / "b.jpg", tree, tree / "sub" / "x.gif"])
    assert _names(paths, tree) == ["sub/deeper/y.TIFF", "sub/x.gif", "sub/z.webp", "b.jpg", "A.PNG", "c.JpEg"]
    assert collect_paths([tree]) == collect_paths([tree])


def test_a_file_named_explicitly_is_kept_whatever_its_extension(tree: Path) -> None:
    assert _names(collect_paths([tree / "readme.md"]), tree) == ["readme.md"]


def test_txt_list_resolves_relative_entries_against_its_folder(tree: Path, tmp_path_factory) -> None:
    lists = tmp_path_factory.mktemp("lists")
    listing = lists / "paths.txt"
    listing.write_text(f"# a comment\n\n{tree / 'b.jpg'}\n  {tree / 'sub'}  \nmissing.jpg\n")
    paths = collect_paths([listing])
    assert paths[0] == tree / "b.jpg"
    assert _names(paths[1:4], tree) == ["sub/deeper/y.TIFF", "sub/x.gif", "sub/z.webp"]
    # A listed file that does not exist is kept: it becomes an error row, the run goes on.
    assert paths[4] == lists / "missing.jpg"


def test_at_prefix_reads_a_list_of_any_name(tree: Path) -> None:
    listing = tree / "batch.list"
    listing.write_text("b.jpg\nA.PNG\n")
    assert _names(collect_paths([f"@{listing}"]), tree) == ["b.jpg", "A.PNG"]


def test_dash_reads_paths_from_stdin(tree: Path) -> None:
    stdin = io.StringIO(f"{tree / 'c.JpEg'}\n{tree / 'b.jpg'}\n")
    assert _names(collect_paths(["-"], stdin=stdin), tree) == ["c.JpEg", "b.jpg"]


def test_read_path_list_keeps_absolute_entries(tmp_path: Path) -> None:
    assert read_path_list(["/abs/a.jpg", "rel/b.jpg", "#x", ""], base=tmp_path) == [Path("/abs/a.jpg"), tmp_path / "rel/b.jpg"]


@pytest.mark.parametrize(
    "make_inputs, message",
    [
        (lambda root: [root / "nope"], "no such file"),
        (lambda root: [], "no input"),
        (lambda root: [root / "empty"], "no images found"),
        (lambda root: ["@" + str(root / "nolist.txt")], "no such file"),
    ],
)
def test_bad_inputs_are_usage_errors(tmp_path: Path, make_inputs, message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("x")
    with pytest.raises(UsageError, match=message) as info:
        collect_paths(make_inputs(tmp_path))
    assert info.value.exit_code == 2
