"""Labelled texts: what detectors are fitted on (split `fit`) and measured on (`validation`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict

from valuescope.errors import UsageError
from valuescope.instruments.document import item_label, nonblank, unique_ids, validated
from valuescope.instruments.taxonomy import Taxonomy, check_value, load_taxonomy
from valuescope.yamlfile import read_yaml


class _TextSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    text: Annotated[str, AfterValidator(nonblank)]
    form: Literal["answer", "statement"] = "answer"
    upholds: list[str] = []
    opposes: list[str] = []
    split: Literal["fit", "validation"]
    hard: bool = False


@dataclass(frozen=True)
class LabelledText:
    id: str
    text: str
    form: str
    upholds: tuple[str, ...]
    opposes: tuple[str, ...]
    split: str
    hard: bool


@dataclass(frozen=True)
class LabelledSet:
    """Texts labelled with the values they uphold or oppose, in a fitting and a validation part."""

    taxonomy: Taxonomy
    texts: tuple[LabelledText, ...]
    source: str
    sha256: str

    def part(self, split: str) -> LabelledSet:
        return LabelledSet(
            self.taxonomy,
            tuple(t for t in self.texts if t.split == split),
            self.source,
            hashlib.sha256(f"{self.sha256}/{split}".encode()).hexdigest(),
        )

    def labels(self) -> np.ndarray:
        """(texts, values) in {-1, 0, +1}: opposes, neither, upholds."""
        ids = self.taxonomy.ids
        out = np.zeros((len(self.texts), len(ids)), dtype=int)
        for i, t in enumerate(self.texts):
            for v in t.upholds:
                out[i, ids.index(v)] = 1
            for v in t.opposes:
                out[i, ids.index(v)] = -1
        return out

    def strings(self) -> list[str]:
        return [t.text for t in self.texts]


def builtin_labelled_path(taxonomy: str) -> Path:
    return Path(
        str(resources.files("valuescope") / "data" / "detect" / f"{taxonomy}-labelled.yaml")
    )


def load_labelled(source: str | Path, taxonomy: str | Taxonomy | None = None) -> LabelledSet:
    """A built-in labelled set by taxonomy name (`schwartz`), or a YAML file of the same layout.

    >>> len(load_labelled("schwartz").part("validation").texts) > 100
    True
    """
    path = builtin_labelled_path(str(source)) if isinstance(source, str) else source
    if isinstance(source, str) and not path.is_file():
        path = Path(source).expanduser()
        if not path.is_file():
            raise UsageError(
                f"no labelled texts for {source!r}: not a taxonomy with built-in labelled texts "
                "and no such file; give a YAML file with 'taxonomy' and 'texts' "
                "(see docs/detect.md)"
            )
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("texts"), list):
        raise UsageError(f"{path}: expected a mapping with 'taxonomy' and a list 'texts'")
    tax = (
        taxonomy
        if isinstance(taxonomy, Taxonomy)
        else load_taxonomy(taxonomy or data.get("taxonomy", ""))
    )
    texts = []
    for index, entry in enumerate(data["texts"]):
        label = item_label(entry, index)
        row = validated(_TextSchema, entry, path, label)
        for field_name in ("upholds", "opposes"):
            for value in getattr(row, field_name):
                check_value(tax, value, f"{path}: {label}: field {field_name!r}")
        if set(row.upholds) & set(row.opposes):
            raise UsageError(f"{path}: {label}: a value is both upheld and opposed")
        texts.append(
            LabelledText(
                row.id,
                row.text,
                row.form,
                tuple(row.upholds),
                tuple(row.opposes),
                row.split,
                row.hard,
            )
        )
    unique_ids(path, [t.id for t in texts])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return LabelledSet(tax, tuple(texts), str(path), digest)
