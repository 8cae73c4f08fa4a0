"""Personas: one system prompt per value (a person who holds it above all), for validation."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from valuescope.errors import UsageError
from valuescope.instruments.taxonomy import Taxonomy
from valuescope.yamlfile import read_yaml


def load_personas(taxonomy: Taxonomy, path: str | Path | None = None) -> dict[str, str]:
    """Persona prompts for every value of `taxonomy`: built in, or from a YAML file.

    The file maps taxonomy names to {value id: prompt}, or is one such mapping directly.
    """
    source = (
        Path(path).expanduser()
        if path
        else Path(str(resources.files("valuescope") / "data" / "personas.yaml"))
    )
    data = read_yaml(source)
    if isinstance(data, dict) and taxonomy.name in data and isinstance(data[taxonomy.name], dict):
        data = data[taxonomy.name]
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a mapping of value id to persona prompt")
    missing = [v for v in taxonomy.ids if not str(data.get(v) or "").strip()]
    if missing:
        raise UsageError(
            f"{source}: no persona prompt for {', '.join(missing)} (taxonomy {taxonomy.name!r}); "
            "add one per value"
        )
    unknown = sorted(set(data) - set(taxonomy.ids))
    if unknown:
        raise UsageError(
            f"{source}: unknown value id(s) {', '.join(unknown)} for {taxonomy.name!r}"
        )
    return {v: str(data[v]).strip() for v in taxonomy.ids}
