from pathlib import Path

import pytest

from valuescope.backends.spec import parse_spec
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
