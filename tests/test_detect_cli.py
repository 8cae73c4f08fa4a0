"""`valuescope detect`: texts from arguments, text files, CSV and JSON Lines into
detections.csv and detections.jsonl; usage errors as one line, exit 2, before any model loads."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from support.cli import Ran, run_cli

from valuescope import detect, load_taxonomy

VALUES = load_taxonomy("schwartz").ids


class EmbedderLoaded(AssertionError):
    """The embedding model was reached: the input passed every check that needs no model."""


@pytest.fixture
def no_embedder(monkeypatch: pytest.MonkeyPatch, no_model: None) -> None:
    """Loading the embedding model (or any model) fails the test."""
    import valuescope.detectors.embed

    def reached(*args: Any) -> Any:
        raise EmbedderLoaded("the embedding model was loaded before the usage error")

    monkeypatch.setattr(valuescope.detectors.embed, "embedder", reached)


def refused(done: Ran, *expected: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read(out: Path) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    lines = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    return rows, lines


# -- errors ----------------------------------------------------------------------------------


def test_a_missing_column_names_the_columns_there_are(tmp_path: Path, no_embedder: None) -> None:
    data = _csv(tmp_path / "answers.csv", [{"id": "a", "answer": "Be kind.", "model": "m"}])
    line = refused(run_cli("detect", "--file", str(data), "--out", str(tmp_path / "d.csv")))
    assert line == (
        f"valuescope: error: --file {str(data)!r}: no column 'text'; its columns: id, answer, "
        "model (choose one with --column)"
    )
    refused(
        run_cli("detect", "--file", str(data), "--column", "body"),
        "no column 'body'; its columns: id, answer, model",
    )
    assert not (tmp_path / "d.csv").exists()


def test_a_missing_key_of_json_lines_names_the_keys_there_are(
    tmp_path: Path, no_embedder: None
) -> None:
    data = tmp_path / "a.jsonl"
    data.write_text('{"id": 1, "answer": "x"}\n{"id": 2, "answer": "y", "extra": 3}\n')
    refused(
        run_cli("detect", "--file", str(data)), "no column 'text'; its columns: id, answer, extra"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--file", "{tmp}/absent.csv"], "absent.csv': cannot read it"),
        (["--file", "{tmp}/absent.txt"], "absent.txt': cannot read it"),
        (["--file", "{tmp}"], "cannot read it"),
        (["--file", "{tmp}/latin1.txt"], "not UTF-8"),
        (["--file", "{tmp}/blank.txt"], "no texts to read"),
        (["--file", "{tmp}/header.csv"], "no rows to read"),
        (["--file", "{tmp}/bad.jsonl"], "line 2: invalid JSON"),
        (["--file", "{tmp}/blank.txt", "--column", "text"], "--column applies to CSV"),
        (["some text", "--column", "text"], "--column applies with --file"),
        (["some text", "--file", "{tmp}/blank.txt"], "not both"),
        ([], "no texts: give them as arguments or --file"),
        (["x", "--detector", "bert"], "--detector 'bert': unknown detector"),
        (["x", "--detector", "judge"], "judge:<model spec>"),
        (["x", "--taxonomy", "virtues"], "unknown taxonomy 'virtues'"),
        (["x", "--taxonomy", "moral-foundations", "--detector", "lexicon"], "no dictionary"),
        (["x", "--out", "{tmp}"], "is a folder"),
        (["x", "--out", "{tmp}/d.tsv"], "give a .csv file"),
        (["x", "--labels", "{tmp}/absent.yaml"], "absent.yaml: no such file"),
    ],
)
def test_usage_errors_are_one_line_exit_2_before_any_model(
    tmp_path: Path, args: list[str], expected: str, no_embedder: None
) -> None:
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    (tmp_path / "header.csv").write_text("id,text\n")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": \n')
    given = [a.replace("{tmp}", str(tmp_path)) for a in args]
    refused(run_cli("detect", *given), expected)


# -- reading ---------------------------------------------------------------------------------

TRICKY = [
    '=HYPERLINK("http://example.com","click")',
    "+1 for helping your neighbours, always.",
    "-5 degrees outside: stay home and look after your family.",
    "@everyone: obey the rules, they keep us safe.",
    'A text with "quotes", commas, and a\nline break inside.',
    "Ünïcödé: protect nature, the forests and the rivers.",
]


def test_csv_input_keeps_ids_texts_and_order_and_is_spreadsheet_safe(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "text": t, "other": "x"} for i, t in enumerate(TRICKY)]
    rows.insert(2, {"id": "=cmd", "text": "Respect the traditions of your elders.", "other": ""})
    out = tmp_path / "out" / "detections.csv"
    done = run_cli("detect", "--file", str(_csv(tmp_path / "in.csv", rows)), "--out", str(out))
    assert done.returncode == 0, done.stderr
    found, lines = _read(out)
    assert list(found[0]) == ["id", "text", *VALUES]
    assert [r["id"] for r in found] == [r["id"] if r["id"] != "=cmd" else "'=cmd" for r in rows]
    for written, given in zip(found, rows, strict=True):
        danger = given["text"][0] in "=+-@"
        assert written["text"] == ("'" if danger else "") + given["text"]
    # every score is a number in [-1, 1]; the JSON Lines file holds the texts as given
    assert all(-1 <= float(r[v]) <= 1 for r in found for v in VALUES)
    assert [line["text"] for line in lines] == [r["text"] for r in rows]
    assert [line["id"] for line in lines] == [r["id"] for r in rows]
    for row, line in zip(found, lines, strict=True):
        for v in VALUES:
            assert 0 <= line["values"][v]["relevance"] <= 1
            assert float(row[v]) == pytest.approx(line["values"][v]["score"], abs=1e-4)
    assert "Values read by embed in 7 texts" in " ".join(done.stdout.split())


def test_the_scores_written_are_those_of_valuescope_detect(tmp_path: Path) -> None:
    texts = ["Help your neighbour carry the shopping.", "Win the race, whatever it takes."]
    out = tmp_path / "d.csv"
    assert run_cli("detect", *texts, "--by-sentence", "--out", str(out)).returncode == 0
    found, lines = _read(out)
    expected = detect(texts, by_sentence=True)
    assert [r["id"] for r in found] == ["1", "2"]
    for i, row in enumerate(found):
        for j, v in enumerate(VALUES):
            assert float(row[v]) == pytest.approx(expected.score[i, j], abs=5e-5)
            assert lines[i]["values"][v]["relevance"] == pytest.approx(
                expected.relevance[i, j], abs=5e-5
            )
            assert lines[i]["values"][v]["present"] == bool(
                expected.relevance[i, j] >= expected.threshold[j]
            )
    assert lines[0]["detector"] == "embed (by sentence)"


def test_json_lines_and_text_files(tmp_path: Path) -> None:
    data = tmp_path / "a.jsonl"
    data.write_text(
        '{"answer": "Be loyal to your team."}\n\n{"id": "q7", "answer": "Stay safe at home."}\n'
        '{"id": "q8", "answer": ""}\n'
    )
    out = tmp_path / "j.csv"
    done = run_cli("detect", "--file", str(data), "--column", "answer", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "1 empty texts left out" in done.stderr
    assert [r["id"] for r in _read(out)[0]] == ["1", "q7"]  # row number, else the id given
    lines = tmp_path / "t.txt"
    lines.write_text("First answer.\n\n   \nSecond answer, after blank lines.\n")
    out = tmp_path / "t.csv"
    assert run_cli("detect", "--file", str(lines), "--out", str(out)).returncode == 0
    found = _read(out)[0]
    assert [(r["id"], r["text"]) for r in found] == [
        ("1", "First answer."),
        ("4", "Second answer, after blank lines."),
    ]


def test_a_thousand_line_csv(tmp_path: Path) -> None:
    base = [
        "Help your neighbour carry the shopping.",
        "Win the race, whatever it takes.",
        "Follow the rules your school sets.",
        "Try something you have never done before.",
    ]
    rows = [{"id": f"row{i:04d}", "text": f"{base[i % 4]} ({i})"} for i in range(1000)]
    out = tmp_path / "big.csv"
    done = run_cli("detect", "--file", str(_csv(tmp_path / "in.csv", rows)), "--out", str(out))
    assert done.returncode == 0, done.stderr
    found, lines = _read(out)
    assert len(found) == len(lines) == 1000
    assert [r["id"] for r in found] == [r["id"] for r in rows]
    assert [r["text"] for r in found] == [r["text"] for r in rows]
    # like texts read alike wherever they sit in the file
    benevolent = [float(r["benevolence"]) for r in found[::4]]
    achieving = [float(r["benevolence"]) for r in found[1::4]]
    assert min(benevolent) > max(achieving)
