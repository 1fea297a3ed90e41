"""
Batch input: ``.txt``, ``.jsonl`` and ``.csv`` files to validated items, every problem at once.

Each line becomes an `Item` whose parameters are the command's defaults overridden by the line's
own. Every item is checked against the model catalog (`aioqwenimage._requests.prepare`) before
anything is sent, so a bad line 480 never costs the 479 images before it; all problems are
collected and reported together, each with ``file:line`` and the rule it breaks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from aioqwenimage._catalog import format_size, parse_size, resolve
from aioqwenimage._cli._files import image_names
from aioqwenimage._cli._messages import model_problem
from aioqwenimage._errors import InvalidRequestError
from aioqwenimage._requests import prepare

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "GENERATION_KEYS",
    "InputError",
    "Item",
    "Loaded",
    "Problem",
    "load_items",
]

GENERATION_KEYS: Final = (
    "size",
    "n",
    "seed",
    "negative_prompt",
    "prompt_extend",
    "watermark",
    "extra_parameters",
)
"""Per-item generation parameters, as `Client.submit` names them."""

_ITEM_KEYS: Final = frozenset({"prompt", "id", "file", "model", *GENERATION_KEYS})
_INT_KEYS: Final = frozenset({"n", "seed"})
_BOOL_KEYS: Final = frozenset({"prompt_extend", "watermark"})
_TRUE: Final = frozenset({"true", "1", "yes", "y", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "n", "off"})
_SUFFIXES: Final = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
# A file name is a single path component: no separators, no leading dot, nothing a shell mangles.
_SAFE_NAME: Final = re.compile(r"^[\w][\w.\- ]{0,119}$")
_SLUG_DROP: Final = re.compile(r"[^\w]+")
_SLUG_CHARS: Final = 40


@attrs.frozen(kw_only=True)
class Problem:
    """One bad input line: where it is and what is wrong."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class InputError(Exception):
    """The input cannot be used at all (missing, unreadable, unknown type, no items)."""


@attrs.frozen(kw_only=True)
class Item:
    """
    One generation of a batch, validated.

    Attributes:
        seq: Position among the file's items, from 0.
        record: Position among the file's records, from 0, counting invalid ones too (what
            ``--shard`` splits by); by default `seq`.
        item_id: The line's ``id``, else its number among items (``"0001"``).
        line: The line in the input file (1-based; the header of a CSV is line 1).
        prompt: What to draw.
        model: The model, the line's or the default.
        params: The generation parameters that are set (defaults merged), as for `Client.submit`.
        stem: The image file name without ``.png`` (``-{i}`` is appended when ``n > 1``).
        size: The output size the model will produce, ``(width, height)``.
        images: How many images the request asks for.
    """

    seq: int
    item_id: str
    line: int
    prompt: str
    model: str
    params: Mapping[str, Any]
    stem: str
    size: tuple[int, int]
    images: int
    record: int = attrs.field(default=attrs.Factory(lambda self: self.seq, takes_self=True))

    def file_names(self) -> list[str]:
        """The names of the item's image files, in image order."""
        return image_names(self.stem, self.images)

    def to_json(self) -> dict[str, Any]:
        """The item as stored in the journal and shown in the manifest."""
        return {
            "id": self.item_id,
            "line": self.line,
            "prompt": self.prompt,
            "model": self.model,
            "parameters": dict(self.params),
            "file": self.stem,
        }


@attrs.frozen(kw_only=True)
class Loaded:
    """What a batch file holds: the valid items, every problem found, and the file's digest."""

    items: tuple[Item, ...]
    problems: tuple[Problem, ...]
    sha256: str
    kind: str


def load_items(path: Path, *, model: str, defaults: Mapping[str, Any]) -> Loaded:
    """
    Read and validate every line of a batch file.

    Args:
        path: A ``.txt`` (one prompt a line; blank lines and ``#`` comments skipped), ``.jsonl``
            (an object a line) or ``.csv`` (a header row, then a row per item) file.
        model: The default model.
        defaults: Default generation parameters (only those that are set).

    Returns:
        The valid items and the problems, in file order; a line with a problem yields no item.

    Raises:
        InputError: The file cannot be read, its type is unknown, or it holds no item at all.
    """
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        msg = f"{path}: unsupported input type {path.suffix!r}; use .txt, .jsonl or .csv"
        raise InputError(msg)
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or exc}"
        raise InputError(msg) from exc
    name = str(path)
    problems: list[Problem] = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.append(Problem(path=name, line=line, message="not valid UTF-8"))
        return Loaded(items=(), problems=tuple(problems), sha256=_digest(data), kind=kind)
    raw: list[tuple[int, dict[str, Any]]] = []
    readers = {"txt": _read_txt, "jsonl": _read_jsonl, "csv": _read_csv}
    for line, record in readers[kind](text, name, problems):
        raw.append((line, record))
    if not raw and not problems:
        msg = f"{path}: no prompts found"
        raise InputError(msg)
    items = _validate(raw, name, model=model, defaults=defaults, problems=problems)
    problems.sort(key=lambda problem: problem.line)
    return Loaded(items=tuple(items), problems=tuple(problems), sha256=_digest(data), kind=kind)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- readers: lines to raw records --------------------------------------------------------------


def _read_txt(
    text: str, path: str, problems: list[Problem]
) -> Iterator[tuple[int, dict[str, Any]]]:
    del path, problems  # a text line is always a prompt
    for number, line in enumerate(text.splitlines(), start=1):
        prompt = line.strip()
        if prompt and not prompt.startswith("#"):
            yield number, {"prompt": prompt}


def _read_jsonl(
    text: str, path: str, problems: list[Problem]
) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(
                    path=path, line=number, message=f"invalid JSON: {exc.msg} (column {exc.colno})"
                )
            )
            continue
        if not isinstance(record, dict):
            kind = type(record).__name__
            problems.append(
                Problem(path=path, line=number, message=f"expected a JSON object, got {kind}")
            )
            continue
        unknown = sorted(set(record) - _ITEM_KEYS)
        if unknown:
            problems.append(Problem(path=path, line=number, message=_unknown_keys(unknown)))
            continue
        yield number, record


def _read_csv(
    text: str, path: str, problems: list[Problem]
) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        problems.append(Problem(path=path, line=1, message=f"bad CSV header: {exc}"))
        return
    unknown = sorted(set(header) - _ITEM_KEYS - {""})
    if unknown:
        problems.append(Problem(path=path, line=1, message=_unknown_keys(unknown, "column")))
        return
    if "prompt" not in header:
        problems.append(Problem(path=path, line=1, message="the header has no 'prompt' column"))
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(Problem(path=path, line=reader.line_num, message=f"bad CSV: {exc}"))
            return
        # line_num counts physical lines read so far: a quoted multi-line cell ends on it.
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            message = f"{len(row)} cells but the header has {len(header)} columns"
            problems.append(Problem(path=path, line=number, message=message))
            continue
        record: dict[str, Any] = {}
        bad = False
        for column, cell in zip(header, row, strict=False):
            value = cell.strip() if column != "prompt" else cell
            if not column or value == "":
                continue  # an empty cell means "not given": the default applies
            try:
                record[column] = _csv_value(column, value)
            except ValueError as exc:
                problems.append(Problem(path=path, line=number, message=f"{column}: {exc}"))
                bad = True
        if not bad:
            record.setdefault("prompt", "")
            yield number, record


def _csv_value(column: str, value: str) -> Any:
    """A CSV cell as the type its column takes."""
    if column in _INT_KEYS:
        try:
            return int(value)
        except ValueError:
            msg = f"must be an integer, got {value!r}"
            raise ValueError(msg) from None
    if column in _BOOL_KEYS:
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        msg = f"must be true or false, got {value!r}"
        raise ValueError(msg)
    if column == "extra_parameters":
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            msg = "must be a JSON object"
            raise ValueError(msg)
        return parsed
    return value


def _unknown_keys(unknown: list[str], what: str = "key") -> str:
    known = ", ".join(sorted(_ITEM_KEYS))
    plural = "s" if len(unknown) > 1 else ""
    return f"unknown {what}{plural} {', '.join(map(repr, unknown))} (known: {known})"


# --- validation: raw records to items -----------------------------------------------------------


def _validate(
    raw: list[tuple[int, dict[str, Any]]],
    path: str,
    *,
    model: str,
    defaults: Mapping[str, Any],
    problems: list[Problem],
) -> list[Item]:
    items: list[Item] = []
    ids: dict[str, int] = {}
    stems: dict[str, int] = {}
    width = max(4, len(str(len(raw))))
    for position, (line, record) in enumerate(raw, start=1):

        def bad(message: str, line: int = line) -> None:
            problems.append(Problem(path=path, line=line, message=message))

        params = {key: value for key, value in defaults.items() if value is not None}
        params.update({key: record[key] for key in GENERATION_KEYS if key in record})
        item_model = record.get("model", model)
        prompt = record.get("prompt")
        if "prompt" not in record:
            bad("missing 'prompt'")
            continue
        item_id, id_problem = _item_id(record.get("id"), position, width)
        if id_problem is not None:
            bad(id_problem)
            continue
        stem, stem_problem = _stem(record.get("file"), item_id, prompt)
        if stem_problem is not None:
            bad(stem_problem)
            continue
        extra = params.get("extra_parameters")
        if extra is not None and not isinstance(extra, Mapping):
            bad("extra_parameters: must be an object")
            continue
        try:
            with warnings.catch_warnings():
                # A new snapshot of a known family is accepted with its family's rules; the
                # client warns about it once at submission, which is soon enough.
                warnings.simplefilter("ignore")
                prepare(prompt, model=item_model, **params)
        except InvalidRequestError as exc:
            if exc.parameter == "model" and isinstance(item_model, str):
                error, _ = model_problem(item_model)
                bad(error or str(exc.message))
            else:
                bad(str(exc.message))
            continue
        if item_id in ids:
            bad(f"duplicate id {item_id!r} (first on line {ids[item_id]})")
            continue
        if stem.lower() in stems:
            bad(f"file name {stem!r} is already used on line {stems[stem.lower()]}")
            continue
        ids[item_id] = line
        stems[stem.lower()] = line
        found = resolve(item_model)
        assert found is not None  # noqa: S101 - prepare() accepted the model
        spec = found[0]
        size = parse_size(params["size"]) if params.get("size") is not None else spec.size.default
        if "size" in params:
            params["size"] = format_size(size)  # one spelling in the journal and the manifest
        items.append(
            Item(
                seq=len(items),
                item_id=item_id,
                line=line,
                prompt=str(prompt),  # prepare() accepted it: a non-empty string
                model=item_model,
                params=params,
                stem=stem,
                size=size,
                images=int(params.get("n") or spec.n_default),
                record=position - 1,
            )
        )
    return items


def _item_id(value: object, position: int, width: int) -> tuple[str, str | None]:
    if value is None:
        return f"{position:0{width}d}", None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return "", f"id: must be a string or an integer, got {type(value).__name__}"
    text = str(value).strip()
    if not text:
        return "", "id: must not be empty"
    return text, None


def _stem(value: object, item_id: str, prompt: object) -> tuple[str, str | None]:
    if value is None:
        slug = _SLUG_DROP.sub("-", str(prompt).lower()).strip("-_")[:_SLUG_CHARS].strip("-_")
        base = _SLUG_DROP.sub("-", item_id).strip("-") or "item"
        return (f"{base}-{slug}" if slug else base), None
    if not isinstance(value, str):
        return "", f"file: must be a string, got {type(value).__name__}"
    name = value.strip()
    if name.lower().endswith(".png"):
        name = name[: -len(".png")]
    if not _SAFE_NAME.match(name):
        return "", (
            f"file: {value!r} is not a plain file name (letters, digits, '.', '-', '_', spaces; "
            "no directories; at most 120 characters)"
        )
    return name, None
