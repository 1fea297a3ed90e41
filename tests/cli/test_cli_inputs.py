"""Batch input files: .txt, .jsonl and .csv parsed into validated items, every problem at once."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from aioqwenimage._cli._inputs import InputError, load_items

if TYPE_CHECKING:
    from pathlib import Path

PLUS = "qwen-image-plus"


def _load(path: Path, **defaults: object):
    return load_items(path, model=PLUS, defaults=defaults)


def test_txt_skips_blanks_and_comments_and_numbers_items(tmp_path: Path):
    """A .txt has a prompt a line; blank and '#' lines are skipped; ids count items, not lines."""
    path = tmp_path / "p.txt"
    path.write_text("# header\n\na red fox\n   \n  a lighthouse at dusk  \n", encoding="utf-8")
    loaded = _load(path)
    assert [] == list(loaded.problems)
    assert [("0001", 3, "a red fox"), ("0002", 5, "a lighthouse at dusk")] == [
        (item.item_id, item.line, item.prompt) for item in loaded.items
    ]
    assert ["0001-a-red-fox.png"] == loaded.items[0].file_names()
    assert ((1664, 928), 1) == (loaded.items[0].size, loaded.items[0].images)


def test_defaults_apply_and_lines_override_them(tmp_path: Path):
    """Command-line defaults fill every item; a .jsonl line's own parameters win."""
    path = tmp_path / "p.jsonl"
    lines = [
        {"prompt": "a"},
        {"prompt": "b", "size": "928x1664", "seed": 7, "watermark": True, "id": "bee"},
        {"prompt": "c", "model": "wan2.2-t2i-flash", "n": 2, "size": "1024*1024", "file": "c.png"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    loaded = _load(path, seed=1, size="1328*1328", prompt_extend=False)
    assert [] == list(loaded.problems)
    a, b, c = loaded.items
    assert {"seed": 1, "size": "1328*1328", "prompt_extend": False} == dict(a.params)
    assert ("bee", "928*1664", 7, True, (928, 1664)) == (
        b.item_id,
        b.params["size"],
        b.params["seed"],
        b.params["watermark"],
        b.size,
    )
    assert ("wan2.2-t2i-flash", ["c-0.png", "c-1.png"], (1024, 1024)) == (
        c.model,
        c.file_names(),
        c.size,
    )


def test_csv_with_header_quotes_and_typed_cells(tmp_path: Path):
    """A .csv takes a header; quoted commas, ints, booleans and empty (default) cells work."""
    path = tmp_path / "p.csv"
    path.write_text(
        'prompt,id,seed,watermark,size\n"a cat, sitting",cat,5,yes,1328x1328\nplain,,,,\n',
        encoding="utf-8",
    )
    loaded = _load(path)
    assert [] == list(loaded.problems)
    cat, plain = loaded.items
    assert ("a cat, sitting", "cat", 5, True, "1328*1328") == (
        cat.prompt,
        cat.item_id,
        cat.params["seed"],
        cat.params["watermark"],
        cat.params["size"],
    )
    assert ("0002", {}, 3) == (plain.item_id, dict(plain.params), plain.line)


def test_every_bad_jsonl_line_is_reported_together(tmp_path: Path):
    """Bad JSON, non-objects, unknown keys and every broken model rule come back at once."""
    path = tmp_path / "bad.jsonl"
    lines = [
        '{"prompt": "ok"}',
        '{"prompt": "x", "size": "1024*1024"}',
        "{not json",
        '{"prompt": ""}',
        "[1, 2]",
        '{"prompt": "y", "colour": "red"}',
        '{"prompt": "z", "n": 3}',
        '{"prompt": "s", "seed": "seven"}',
        '{"size": "1328*1328"}',
        '{"prompt": "d", "id": "dup"}',
        '{"prompt": "e", "id": "dup"}',
        '{"prompt": "f", "file": "../escape.png"}',
        '{"prompt": "g", "model": "dall-e-3"}',
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    loaded = _load(path)
    where = {problem.line: problem.message for problem in loaded.problems}
    assert [2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13] == sorted(where)
    assert "size: 1024*1024 is not accepted" in where[2]
    assert "qwen-image-plus" in where[2]
    assert where[3].startswith("invalid JSON")
    assert "prompt: must be a non-empty string" in where[4]
    assert "expected a JSON object, got list" == where[5]
    assert "unknown key 'colour'" in where[6]
    assert "n: must be 1" in where[7]
    assert "seed: must be an integer" in where[8]
    assert "missing 'prompt'" == where[9]
    assert "duplicate id 'dup' (first on line 10)" == where[11]
    assert "not a plain file name" in where[12]
    assert "unknown model 'dall-e-3'" in where[13]
    assert ["ok", "d"] == [item.prompt for item in loaded.items]
    assert str(loaded.problems[0]).startswith(f"{path}:2: size:")


def test_bad_csv_cells_and_header(tmp_path: Path):
    """Unparseable cells name the column and line; an unknown or prompt-less header is line 1."""
    good = tmp_path / "cells.csv"
    good.write_text("prompt,seed,watermark\na,x,yes\nb,1,maybe\n,,\nc,2,no\n", encoding="utf-8")
    loaded = _load(good)
    assert [
        (2, "seed: must be an integer, got 'x'"),
        (3, "watermark: must be true or false, got 'maybe'"),
    ] == [(p.line, p.message) for p in loaded.problems]
    assert ["c"] == [item.prompt for item in loaded.items]
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("prompt,colour\na,red\n", encoding="utf-8")
    assert [(1, "unknown column 'colour'")] == [
        (p.line, p.message.split(" (known")[0]) for p in _load(unknown).problems
    ]
    no_prompt = tmp_path / "noprompt.csv"
    no_prompt.write_text("id,seed\na,1\n", encoding="utf-8")
    assert ["the header has no 'prompt' column"] == [p.message for p in _load(no_prompt).problems]


def test_a_csv_prompt_cell_left_empty_breaks_the_prompt_rule(tmp_path: Path):
    """An empty prompt cell is an item with an empty prompt, which the catalog rejects."""
    path = tmp_path / "p.csv"
    path.write_text("prompt,seed\n,4\n", encoding="utf-8")
    assert ["prompt: must be a non-empty string (model 'qwen-image-plus')"] == [
        p.message for p in _load(path).problems
    ]


def test_same_file_name_twice_is_refused(tmp_path: Path):
    """Two items may not write the same image file (names compare case-insensitively)."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "file": "Same"}\n{"prompt": "b", "file": "same.png"}\n')
    assert ["file name 'same' is already used on line 1"] == [
        p.message for p in _load(path).problems
    ]


def test_not_utf8_is_one_problem_at_its_line(tmp_path: Path):
    """A file that is not UTF-8 is reported at the line of the first bad byte."""
    path = tmp_path / "p.txt"
    path.write_bytes(b"fine\nfine too\nbad \xff byte\n")
    loaded = _load(path)
    assert ([(3, "not valid UTF-8")], ()) == (
        [(p.line, p.message) for p in loaded.problems],
        loaded.items,
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p.yaml", "- a\n", "unsupported input type '.yaml'"),
        ("p.txt", "\n# only a comment\n", "no prompts found"),
        ("missing.txt", None, "cannot read"),
    ],
)
def test_unusable_files_raise_input_error(
    tmp_path: Path, name: str, content: str | None, message: str
):
    """An unknown suffix, a file with no prompt, or a missing file is an InputError."""
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        _load(path)


def test_digest_follows_the_bytes(tmp_path: Path):
    """The fingerprint's digest changes with any byte of the file, and only then."""
    path = tmp_path / "p.txt"
    path.write_text("a\n", encoding="utf-8")
    first = _load(path).sha256
    assert first == _load(path).sha256
    path.write_text("a\n\n", encoding="utf-8")
    assert first != _load(path).sha256
