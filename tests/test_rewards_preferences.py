"""Preference data: valuescope's rows, PRISM's and PersonalLLM's hub layouts (as local files and
folders, no network), one-line errors naming file, row and column, and counted drops."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from valuescope.errors import UsageError
from valuescope.rewards import load_preferences


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROW = {"user": "ann", "prompt": "Should I?", "chosen": "Yes, help.", "rejected": "No."}


def test_jsonl_and_csv_rows_load_with_weights(tmp_path: Path) -> None:
    found = load_preferences(str(jsonl(tmp_path / "p.jsonl", [ROW, {**ROW, "weight": 2.5}])))
    assert found.users == ("ann", "ann") and list(found.weights) == [1.0, 2.5]
    csv = tmp_path / "p.csv"
    csv.write_text('user,prompt,chosen,rejected,weight\nbo,"Q, really?",A,B,\n', encoding="utf-8")
    found = load_preferences(str(csv))
    assert (found.prompts[0], found.chosen[0], found.weights[0]) == ("Q, really?", "A", 1.0)


def test_chat_cells_give_their_last_messages_content(tmp_path: Path) -> None:
    chat = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "Kind answer"}]
    found = load_preferences(str(jsonl(tmp_path / "p.jsonl", [{**ROW, "chosen": chat}])))
    assert found.chosen == ("Kind answer",)


def test_empty_and_identical_rows_are_dropped_and_counted(tmp_path: Path) -> None:
    rows = [ROW, {**ROW, "chosen": ""}, {**ROW, "rejected": ROW["chosen"]}, {**ROW, "user": None}]
    found = load_preferences(str(jsonl(tmp_path / "p.jsonl", rows)))
    assert len(found) == 1
    assert found.dropped == {"an empty field": 2, "the same text chosen and rejected": 1}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [ROW, {**ROW, "weight": "heavy"}],
            "p.jsonl: row 2: column 'weight': 'heavy' is not a number",
        ),
        ([{**ROW, "weight": -1}], "p.jsonl: row 1: column 'weight': -1 must be a positive number"),
        (
            [ROW, {"user": "x", "prompt": "q", "chosen": "a"}],
            "p.jsonl: row 2: no column 'rejected'",
        ),
        ([{"text": "a"}], "not preference data: needs the columns user, prompt, chosen, rejected"),
        ([{**ROW, "chosen": ""}], "no usable comparison (1 for an empty field)"),
    ],
)
def test_bad_rows_are_one_line_errors_naming_file_row_and_column(
    tmp_path: Path, rows: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        load_preferences(str(jsonl(tmp_path / "p.jsonl", rows)))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        load_preferences(str(tmp_path / "absent.jsonl"))


def prism_utterances() -> list[dict[str, Any]]:
    """Rows laid out as PRISM's utterances.jsonl: one per model response of a user's turn."""
    rows = []
    for user, conversation, scores in (
        ("user0", "c0", [80, 20, 50, 50]),
        ("user1", "c1", [10, 90]),
    ):
        for k, score in enumerate(scores):
            rows.append(
                {
                    "utterance_id": f"ut{len(rows)}",
                    "conversation_id": conversation,
                    "user_id": user,
                    "turn": 0,
                    "within_turn_id": k,
                    "user_prompt": f"prompt of {user}",
                    "model_response": f"response {k} of {user}",
                    "model_name": "m",
                    "model_provider": "p",
                    "score": score,
                    "if_chosen": score == max(scores),
                    "included_in_balanced_subset": True,
                }
            )
    return rows


def check_prism(found: Any) -> None:
    assert found.layout.startswith("prism")
    pairs = set(zip(found.users, found.chosen, found.rejected, strict=True))
    assert ("user0", "response 0 of user0", "response 1 of user0") in pairs
    assert ("user1", "response 1 of user1", "response 0 of user1") in pairs
    assert len(found) == 5 + 1  # four responses: six pairs, one tied; two responses: one pair
    assert found.dropped == {"a tie in score": 1}
    assert found.prompts[0] == "prompt of user0"


def test_prism_utterances_file_loads(tmp_path: Path) -> None:
    check_prism(load_preferences(str(jsonl(tmp_path / "utterances.jsonl", prism_utterances()))))


def prism_folder(where: Path) -> Path:
    """A local copy of the hub repository's layout: configs named in README.md."""
    where.mkdir()
    jsonl(where / "utterances.jsonl", prism_utterances())
    history: dict[str, list[dict[str, Any]]] = {}
    for row in prism_utterances():
        turns = history.setdefault(row["conversation_id"], [])
        if not turns:
            turns.append({"turn": 0, "role": "user", "content": row["user_prompt"]})
        turns.append(
            {
                "turn": 0,
                "role": "model",
                "content": row["model_response"],
                "model_name": "m",
                "score": row["score"],
                "if_chosen": row["if_chosen"],
                "within_turn_id": row["within_turn_id"],
            }
        )
    conversations = [
        {"conversation_id": c, "user_id": f"user{c[1]}", "conversation_history": h}
        for c, h in history.items()
    ]
    jsonl(where / "conversations.jsonl", conversations)
    (where / "README.md").write_text(
        "---\nconfigs:\n- config_name: conversations\n  data_files: conversations.jsonl\n"
        "- config_name: utterances\n  data_files: utterances.jsonl\n---\n# PRISM-like\n",
        encoding="utf-8",
    )
    return where


@pytest.mark.parametrize("config", ["utterances", "conversations"])
def test_a_prism_like_hub_folder_loads_by_config(tmp_path: Path, config: str) -> None:
    folder = prism_folder(tmp_path / "prism-alignment")
    check_prism(load_preferences(f"hf:{folder}#{config}"))


def test_a_personalllm_like_hub_folder_loads_each_reward_model_as_a_user(tmp_path: Path) -> None:
    import pandas as pd

    models = ["gemma_2b", "beaver_7b"]
    rows = []
    for p in range(3):
        row: dict[str, Any] = {"prompt": f"prompt {p}", "subset": "s", "prompt_id": p}
        for i in range(1, 9):
            row[f"response_{i}"] = f"answer {i} to {p}"
            row[f"response_{i}_model"] = "gen"
            row[f"response_{i}_gemma_2b"] = float(i)  # likes the last answer best
            row[f"response_{i}_beaver_7b"] = float(-i)  # likes the first
        rows.append(row)
    folder = tmp_path / "PersonalLLM"
    (folder / "data").mkdir(parents=True)
    pd.DataFrame(rows[:2]).to_parquet(folder / "data" / "train-00000-of-00001.parquet")
    pd.DataFrame(rows[2:]).to_parquet(folder / "data" / "test-00000-of-00001.parquet")
    found = load_preferences(f"hf:{folder}@train")
    assert found.layout == "personalllm" and len(found) == 2 * len(models)
    by_user = dict(zip(found.users, zip(found.chosen, found.rejected, strict=True), strict=False))
    assert by_user["gemma_2b"] == ("answer 8 to 1", "answer 1 to 1")
    assert by_user["beaver_7b"] == ("answer 1 to 1", "answer 8 to 1")
    assert len(load_preferences(f"hf:{folder}@test")) == 2


def test_an_unknown_hub_config_is_one_line_naming_the_dataset(tmp_path: Path) -> None:
    folder = prism_folder(tmp_path / "prism-alignment")
    with pytest.raises(UsageError) as caught:
        load_preferences(f"hf:{folder}#survey")
    assert f"hf:{folder}#survey: could not load the dataset" in str(caught.value)
    assert "\n" not in str(caught.value)
