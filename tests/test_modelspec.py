from pathlib import Path
from typing import Any

import pytest

from valuescope.backends.spec import ModelSpec, parse_spec
from valuescope.errors import ModelSpecError


def test_embedded_spec_is_white_box() -> None:
    spec = parse_spec("smollm2")
    assert (spec.kind, spec.target, spec.white_box) == ("embedded", "smollm2", True)


def test_hf_spec_keeps_target_verbatim() -> None:
    spec = parse_spec("hf:HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (spec.kind, spec.target) == ("hf", "HuggingFaceTB/SmolLM2-135M-Instruct")


def test_gguf_spec_resolves_existing_file(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    spec = parse_spec(f"gguf:{model}")
    assert spec.kind == "gguf" and Path(spec.target) == model.resolve()


def test_gguf_spec_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError, match=r"no such file .*nope\.gguf"):
        parse_spec(f"gguf:{tmp_path / 'nope.gguf'}")


def test_gguf_spec_needs_gguf_suffix(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError, match=r"expected a \.gguf file"):
        parse_spec(f"gguf:{tmp_path / 'weights.bin'}")


def test_openai_spec_splits_model_and_url() -> None:
    spec = parse_spec("openai:org/model@1@http://127.0.0.1:8000/v1/")
    assert (spec.kind, spec.target, spec.base_url) == (
        "openai",
        "org/model@1",
        "http://127.0.0.1:8000/v1",
    )
    assert not spec.white_box


@pytest.mark.parametrize("bad", ["gpt2", "hf:", "foo:bar", "openai:model", "openai:m@ftp://x"])
def test_bad_specs_list_the_accepted_forms(bad: str) -> None:
    with pytest.raises(ModelSpecError) as info:
        parse_spec(bad)
    message = str(info.value)
    assert "\n" not in message
    assert "form" in message


def test_a_plugin_backend_prefix_loads_and_audits(tmp_path: Path) -> None:
    """A backend registered under a new prefix is asked for `<prefix>:<target>` specs (they
    were refused before the registry was asked)."""
    from valuescope import RunSpec, register_backend, run_audit
    from valuescope.backends import Loglikelihood, load_backend
    from valuescope.backends import spec as specs

    class Indifferent:
        """A black-box model that finds every continuation equally likely."""

        def __init__(self, spec: ModelSpec) -> None:
            self.spec = spec

        @property
        def name(self) -> str:
            return f"indifferent {self.spec.target}"

        def loglikelihood(self, requests: Any, progress: Any = None) -> list[Loglikelihood]:
            return [Loglikelihood(-1.0, (-1.0,), True) for _ in requests]

        def generate(self, prompts: Any, params: Any, progress: Any = None) -> list[list[str]]:
            return [["A"] * params.n for _ in prompts]

    with pytest.raises(ModelSpecError, match="unknown model spec 'flat:m'"):
        parse_spec("flat:m")
    register_backend("flat", lambda spec, **options: Indifferent(spec))
    try:
        spec = parse_spec("flat:m")
        assert (spec.kind, spec.target, spec.white_box) == ("flat", "m", False)
        assert load_backend("flat:m").name == "indifferent m"
        result = run_audit(str(Path(__file__).parent / "fixtures" / "mini-dilemmas.yaml"),
                           RunSpec(model="flat:m", method="choice"), out=tmp_path / "run")  # fmt: skip
        assert all(s.score == pytest.approx(0.5) for s in result.profile.scores.values())
        with pytest.raises(ModelSpecError, match="flat:<target>"):
            parse_spec("other:m")
    finally:
        specs.PLUGIN_PREFIXES.discard("flat")
        from valuescope import backends

        backends._REGISTRY.pop("flat", None)
