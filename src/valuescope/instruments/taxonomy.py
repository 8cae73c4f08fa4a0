"""Taxonomies: named sets of values (Schwartz, Moral Foundations, or the user's own YAML)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from valuescope.errors import UsageError
from valuescope.yamlfile import read_yaml

VALUE_ID = r"^[a-z][a-z0-9-]*$"


class _ValueSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=VALUE_ID)
    label: str = Field(min_length=1)
    definition: str = Field(min_length=1)
    group: str | None = None


class _TaxonomySchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=VALUE_ID)
    label: str = Field(min_length=1)
    values: list[_ValueSchema] = Field(min_length=2)

    @field_validator("values")
    @classmethod
    def _unique(cls, values: list[_ValueSchema]) -> list[_ValueSchema]:
        seen: set[str] = set()
        for value in values:
            if value.id in seen:
                raise ValueError(f"duplicate value id {value.id!r}")
            seen.add(value.id)
        return values


@dataclass(frozen=True)
class Value:
    """One value of a taxonomy."""

    id: str
    label: str
    definition: str
    group: str | None = None


@dataclass(frozen=True)
class Taxonomy:
    """A named, ordered set of values."""

    name: str
    label: str
    values: tuple[Value, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(v.id for v in self.values)

    def __getitem__(self, value_id: str) -> Value:
        for value in self.values:
            if value.id == value_id:
                return value
        raise KeyError(value_id)

    def __contains__(self, value_id: object) -> bool:
        return value_id in self.ids


BUILTIN_TAXONOMIES = ("schwartz", "moral-foundations")


def _builtin_path(name: str) -> Path:
    return Path(str(resources.files("valuescope") / "data" / "taxonomies" / f"{name}.yaml"))


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """A built-in taxonomy by name, or a custom one from a YAML file.

    >>> load_taxonomy("schwartz").ids[:2]
    ('self-direction', 'stimulation')
    """
    key = str(name_or_path)
    if key in BUILTIN_TAXONOMIES:
        path = _builtin_path(key)
    else:
        path = Path(key).expanduser()
        if not path.is_file():
            raise UsageError(
                f"unknown taxonomy {key!r}: not a built-in ({', '.join(BUILTIN_TAXONOMIES)}) "
                "and no such YAML file"
            )
    data = read_yaml(path)
    try:
        schema = _TaxonomySchema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{path}: taxonomy field {where!r}: {first['msg']}") from None
    return Taxonomy(
        name=schema.name,
        label=schema.label,
        values=tuple(Value(v.id, v.label, v.definition, v.group) for v in schema.values),
    )


def check_value(taxonomy: Taxonomy, value: str, where: str) -> None:
    """A clear error, naming `where` (file, item, field), when `value` is not in the taxonomy."""
    if value not in taxonomy:
        raise UsageError(
            f"{where}: unknown value id {value!r}; taxonomy {taxonomy.name!r} has "
            f"{', '.join(taxonomy.ids)}"
        )
