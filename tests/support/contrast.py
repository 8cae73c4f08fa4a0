"""A small contrastive-pairs file for tests: two values, lexically distinct stances."""

from __future__ import annotations

from pathlib import Path

import yaml


def small_contrast(tmp_path: Path) -> Path:
    """Two values, eight pairs each, with lexically distinct stances."""
    pairs = []
    for value, yes, no in (
        (
            "benevolence",
            "I helped them gladly and stayed to care for them",
            "I ignored them and walked away",
        ),
        (
            "power",
            "I took charge and made everyone follow my orders",
            "I let someone else lead and stayed quiet",
        ),
    ):
        for k in range(8):
            pairs.append({"id": f"{value}-{k}", "value": value,
                          "context": f"Situation number {k} happened at place {k}.",
                          "uphold": f"{yes}, number {k}.", "oppose": f"{no}, number {k}."})  # fmt: skip
    path = tmp_path / "contrast.yaml"
    path.write_text(yaml.safe_dump({"name": "small", "taxonomy": "schwartz", "pairs": pairs}))
    return path
