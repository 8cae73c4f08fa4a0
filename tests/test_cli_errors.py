"""Usage errors of the white-box commands: each names the file, flag or value, says how to fix
it, exits 2 without a traceback, writes nothing, and comes before any model loads (a model
that would load fails the test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file
from support.cli import Ran, run_cli
from support.contrast import small_contrast

from valuescope.audit.results import load_answers
from valuescope.errors import UsageError
from valuescope.steering.operators import parse_steer
from valuescope.vectors.contrast import load_contrast
from valuescope.vectors.extract import VectorSet, extract_vectors


@pytest.fixture(scope="module")
def vector_file(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from valuescope import load_backend

    where = tmp_path_factory.mktemp("errors")
    contrast = load_contrast(small_contrast(where))
    backend = load_backend(f"hf:{tiny_model_dir}", batch_size=3)
    return extract_vectors(backend, contrast, seed=0).save(where / "v.safetensors")


def refused(done: Ran, *expected: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    message = " ".join(done.stderr.split())  # rich wraps long lines
    for text in expected:
        assert text in message, (text, done.stderr)


# -- vector files ----------------------------------------------------------------------------


def _rewritten(source: Path, target: Path, **changes: Any) -> Path:
    """A copy of a vector file with metadata entries changed (None: removed) and tensors
    dropped (`drop=[names]`)."""
    drop = set(changes.pop("drop", []))
    with safe_open(str(source), framework="numpy") as handle:
        metadata = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys() if k not in drop}  # noqa: SIM118
    for key, value in changes.items():
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value
    save_file(tensors, str(target), metadata=metadata)
    return target


def test_a_damaged_vector_file_is_named_not_a_traceback(vector_file: Path, tmp_path: Path) -> None:
    info = json.loads(_metadata(vector_file)["values"])
    layer = next(iter(info["power"]["layers"]))
    damaged = {
        "no-values": ({"values": None}, "missing 'values'"),
        "bad-json": ({"values": "{not json"}, "damaged valuescope vector file"),
        "bad-size": ({"hidden_size": "abc"}, "damaged valuescope vector file"),
        "no-tensor": ({"drop": [f"power/{layer}"]}, f"missing 'power/{layer}'"),
        "wrong-size": ({"hidden_size": "7"}, f"tensor power/{layer} has shape"),
    }
    for name, (changes, expected) in damaged.items():
        path = _rewritten(vector_file, tmp_path / f"{name}.safetensors", **changes)
        with pytest.raises(UsageError, match="damaged valuescope vector file") as caught:
            VectorSet.load(path)
        assert str(path) in str(caught.value) and expected in str(caught.value), name
        assert "make it again with `valuescope vectors`" in str(caught.value)


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="numpy") as handle:
        return dict(handle.metadata())


def test_a_foreign_file_points_to_the_import_command(tmp_path: Path) -> None:
    path = tmp_path / "layers.safetensors"
    save_file({"3": np.zeros(8, dtype=np.float32)}, str(path))
    with pytest.raises(UsageError, match="not a valuescope vector file") as caught:
        VectorSet.load(path)
    assert "`valuescope vectors-import FILE --value VALUE`" in str(caught.value)
    done = run_cli("vectors-import", str(tmp_path / "empty.safetensors"), "--value", "power")
    refused(done, "no such file")
    save_file({}, str(tmp_path / "empty.safetensors"))
    done = run_cli("vectors-import", str(tmp_path / "empty.safetensors"), "--value", "power",
                   "--out", str(tmp_path / "imported.safetensors"))  # fmt: skip
    refused(done, "empty.safetensors: no tensors")
    assert not (tmp_path / "imported.safetensors").exists()


def test_vectors_import_checks_the_value_before_loading_the_model(
    vector_file: Path, tmp_path: Path, no_model: None
) -> None:
    path = tmp_path / "layers.safetensors"
    save_file({"3": np.ones(8, dtype=np.float32)}, str(path))
    done = run_cli("vectors-import", str(path), "--value", "kindness",
                   "--out", str(tmp_path / "imported.safetensors"))  # fmt: skip
    refused(done, "--value 'kindness': no contrastive pairs", "benevolence")
    done = run_cli("vectors-import", str(path), "--value", "power", "--out", str(tmp_path))
    refused(done, f"--out '{tmp_path}' is a folder; give a file path")


# -- steering specs --------------------------------------------------------------------------


def test_steer_specs_say_what_is_wrong_with_them(vector_file: Path) -> None:
    cases = {
        f"{vector_file}": "expected FILE:value=coef",
        f"{vector_file}:": "expected FILE:value=coef",
        f"{vector_file}:power": "expected FILE:value=coef",
        f"{vector_file}:=1": "'=1' is not value=coef",
        f"{vector_file}:power=1,benevolence": "'benevolence' is not value=coef",
        f"{vector_file}:power=abc": "the coefficient is not a number",
        f"{vector_file}:power=nan": "a finite number other than 0",
        f"{vector_file}:power=inf": "a finite number other than 0",
        f"{vector_file}:power=0": "0 steers nothing",
        f"{vector_file}:power@x=1": "the layer after @ is not a whole number",
        f"{vector_file}:power@99=1": "no power vector at layer 99",
        f"{vector_file}:kindness=1": "no vector for value 'kindness'",
        f"{vector_file}:power=1,power=2": "power@",
    }
    for spec, expected in cases.items():
        with pytest.raises(UsageError) as caught:
            parse_steer(spec)
        message = str(caught.value)
        assert message.startswith("--steer") and expected in message, (spec, message)
    with pytest.raises(UsageError, match="is given twice"):
        parse_steer(f"{vector_file}:power=1,power=2")
    # another layer of the same value is another term, not a duplicate
    assert len(parse_steer(f"{vector_file}:power@1=1,power@2=2").terms) == 2
    # a folder with ':' in its name: the spec is what follows the last ':'
    with pytest.raises(UsageError, match="expected FILE:value=coef"):
        parse_steer("/data/a:b/v.safetensors")


def test_vectors_export_names_its_argument_and_checks_out(
    vector_file: Path, tmp_path: Path
) -> None:
    done = run_cli("vectors-export", f"{vector_file}:power=abc", "--out", str(tmp_path / "x.gguf"))
    refused(done, "STEER_SPEC: 'power=abc': the coefficient is not a number")
    assert "--steer" not in done.stderr
    done = run_cli("vectors-export", f"{vector_file}:power@2=1", "--out", str(tmp_path))
    refused(done, f"--out '{tmp_path}' is a folder")
    assert list(tmp_path.iterdir()) == []


def test_audit_steering_flags_fail_before_any_model(
    vector_file: Path, tmp_path: Path, no_model: None
) -> None:
    out = tmp_path / "run"
    done = run_cli("audit", "--steer-mode", "gated", "--out", str(out))
    refused(done, "--steer-mode applies with --steer")
    done = run_cli("audit", "--steer", f"{vector_file}:power=0", "--out", str(out))
    refused(done, "--steer: 'power=0'", "0 steers nothing")
    assert not out.exists()


def test_an_intervention_a_kind_refuses_names_the_flag_given(
    vector_file: Path, tmp_path: Path, no_model: None
) -> None:
    out = tmp_path / "run"
    done = run_cli("audit", "-i", "schwartz-portraits", "--align", "benevolence=1",
                   "--out", str(out))  # fmt: skip
    refused(done, "--align does not apply to likert instruments")
    assert "--steer" not in done.stderr
    done = run_cli("audit", "-i", "schwartz-portraits", "--steer", f"{vector_file}:power=1",
                   "--out", str(out))  # fmt: skip
    refused(done, "--steer does not apply to likert instruments")
    assert "--align" not in done.stderr
    assert not out.exists()


def test_a_steered_audit_of_a_server_model_opens_nothing(vector_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "served"
    done = run_cli("audit", "--steer", f"{vector_file}:power=1",
                   "--model", "openai:m@http://127.0.0.1:9/v1", "--out", str(out))  # fmt: skip
    refused(done, "--steer needs a local model", "is black-box")
    assert not (out / "responses.sqlite").exists()


# -- vectors, read and steer -----------------------------------------------------------------


def test_vectors_checks_its_settings_before_loading_the_model(
    tmp_path: Path, no_model: None
) -> None:
    pairs = small_contrast(tmp_path)  # eight pairs per value
    out = tmp_path / "v.safetensors"
    base = ("vectors", "--contrast", str(pairs), "--out", str(out))
    refused(run_cli(*base, "--method", "bogus"), "--method 'bogus': choose one of mean-diff")
    refused(run_cli(*base, "--held-out", "2"), "--held-out 2.0: must be between 0 and 1")
    refused(run_cli(*base, "--held-out", "0.95"), "keeps all 8 of power's pairs out")
    refused(run_cli(*base, "--values", " , "), "--values ' , ': name at least one value")
    refused(run_cli("vectors", "--contrast", str(pairs), "--out", str(tmp_path)),
            f"--out '{tmp_path}' is a folder")  # fmt: skip
    assert not out.exists()


def test_read_refuses_bad_text_files_and_folders(vector_file: Path, tmp_path: Path) -> None:
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    refused(run_cli("read", "--vectors", str(vector_file), "--file", str(binary)),
            "not UTF-8 text", "save it as UTF-8")  # fmt: skip
    refused(run_cli("read", "--vectors", str(vector_file), "--file", str(tmp_path)),
            "is a folder")  # fmt: skip
    refused(run_cli("read", "--vectors", str(vector_file), "some text", "--out", str(tmp_path)),
            f"--out '{tmp_path}' is a folder")  # fmt: skip


def test_an_empty_answers_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "answers.jsonl").write_text("\n")
    with pytest.raises(UsageError, match="holds no answers") as caught:
        load_answers(tmp_path)
    assert "rerun the audit with the same --out" in str(caught.value)


def test_steer_checks_target_budget_method_and_instrument_first(
    vector_file: Path, tmp_path: Path, no_model: None
) -> None:
    out = tmp_path / "steer"
    base = ("steer", "--vectors", str(vector_file), "--out", str(out))
    cases = [
        (("--target", "power=+0.2,power=+0.1"), "--target: power is given twice"),
        (("--target", "power=+0.2", "--fluency-budget", "10"),
         "--fluency-budget 10.0: give a share above 0 and below 10"),
        (("--target", "power=+0.2", "--method", "bogus"), "--method 'bogus' is unknown"),
        (("--target", "power=+0.2", "--limit", "0"), "--limit must be a positive number"),
        (("--target", "power=+0.2", "--instrument", "schwartz-portraits"),
         "is a likert instrument"),
        (("--target", "power=+0.2", "--instrument", "moral-foundations-dilemmas"),
         "is on taxonomy 'moral-foundations', the vectors on 'schwartz'"),
        (("--target", "care=+0.2"), "no vector for value 'care'"),
    ]  # fmt: skip
    for args, expected in cases:
        refused(run_cli(*base, *args), expected)
    assert not out.exists()
