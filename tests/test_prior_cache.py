"""The neutral-prompt prior kept across runs: asked of the model once per model and text, never
reused for another model, template, neutral prompt or a hooked (steered) model, and safe with
two writers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from support.contrast import small_contrast

import valuescope.audit.scoring
from valuescope import load_backend
from valuescope.audit.scoring import LikelihoodMethod, neutral_prior
from valuescope.backends import LoglikelihoodRequest
from valuescope.backends.base import Chat
from valuescope.cache import KeptScores
from valuescope.instruments.dilemma import load_dilemmas

TEXTS = ["Help the neighbour move.", "Finish the report tonight.", "Go hiking alone."]


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test starts with an empty cache folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("VALUESCOPE_CACHE", str(folder))
    return folder


@pytest.fixture
def backend(tiny_model_dir: Path) -> Any:
    """A tiny model of this test's own, so weight edits stay here."""
    return load_backend(f"hf:{tiny_model_dir}", batch_size=3)


class Asked:
    """Records what the wrapped backend's `loglikelihood` was asked, per call."""

    def __init__(self, backend: Any) -> None:
        self.calls: list[list[LoglikelihoodRequest]] = []
        self._real = backend.loglikelihood
        backend.loglikelihood = self

    def __call__(self, requests: Any, progress: Any = None) -> Any:
        self.calls.append(list(requests))
        return self._real(requests, progress)

    def neutral(self) -> int:
        """Requests whose context is the neutral prompt."""
        prompt = valuescope.audit.scoring.NEUTRAL_PROMPT
        return sum(
            isinstance(r.context, Chat) and r.context.user == prompt
            for call in self.calls
            for r in call
        )


@pytest.fixture
def asked(backend: Any) -> Iterator[Asked]:
    yield Asked(backend)
    del backend.loglikelihood


def direct(backend: Any, texts: list[str], prompt: str | None = None) -> list[float]:
    """The prior computed the plain way (one text at a time, no store), not counted."""
    chat = Chat(prompt or valuescope.audit.scoring.NEUTRAL_PROMPT, None, "")
    found = backend.loglikelihood_naive([LoglikelihoodRequest(chat, t) for t in texts])
    return [s.logprob for s in found]


def test_a_second_run_asks_the_model_no_neutral_prompt(backend: Any, asked: Asked) -> None:
    items = load_dilemmas("schwartz-dilemmas").items[:4]
    method = LikelihoodMethod()
    first = method(backend, items, "original", None)
    n_options = len({o.text for item in items for o in item.options})
    assert asked.neutral() == n_options
    asked.calls.clear()
    again = method(backend, items, "original", "You are a careful accountant.")
    assert asked.neutral() == 0 and asked.calls  # the item prompts were still asked
    third = method(backend, items, "original", None)
    assert asked.neutral() == 0
    for a, b in zip(first, third, strict=True):
        assert a.p == pytest.approx(b.p, abs=1e-12)
    assert [r.p for r in again] != [r.p for r in first]  # the system prompt did count


def test_kept_priors_equal_the_computed_ones(backend: Any, asked: Asked) -> None:
    expected = direct(backend, TEXTS)
    fresh = neutral_prior(backend, TEXTS)
    kept = neutral_prior(backend, TEXTS)
    assert asked.neutral() == len(TEXTS)  # the second call read them all from the store
    for text, value in zip(TEXTS, expected, strict=True):
        assert fresh[text] == pytest.approx(value, abs=1e-3)
        assert kept[text] == fresh[text]


def test_only_texts_never_scored_are_asked(backend: Any, asked: Asked) -> None:
    neutral_prior(backend, TEXTS[:2])
    neutral_prior(backend, TEXTS)
    assert asked.neutral() == 2 + 1


def test_another_process_reuses_them(backend: Any, own_cache: Path, tiny_model_dir: Path) -> None:
    neutral_prior(backend, TEXTS)
    script = (
        "import json, sys\n"
        "from valuescope import load_backend\n"
        "from valuescope.audit.scoring import neutral_prior\n"
        "backend = load_backend(sys.argv[1])\n"
        "backend.loglikelihood = lambda *a, **k: sys.exit('the model was asked')\n"
        "print(json.dumps(neutral_prior(backend, sys.argv[2:])))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, f"hf:{tiny_model_dir}", *TEXTS],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == neutral_prior(backend, TEXTS)


def test_a_changed_template_misses(backend: Any, asked: Asked) -> None:
    neutral_prior(backend, TEXTS)
    backend.tokenizer.chat_template = backend.tokenizer.chat_template.replace(
        "<|im_start|>", "<|im_start|> "
    )
    changed = neutral_prior(backend, TEXTS)
    assert asked.neutral() == 2 * len(TEXTS)
    assert list(changed.values()) == pytest.approx(direct(backend, TEXTS), abs=1e-3)


def test_a_changed_neutral_prompt_misses(
    backend: Any, asked: Asked, monkeypatch: pytest.MonkeyPatch
) -> None:
    neutral_prior(backend, TEXTS)
    monkeypatch.setattr(valuescope.audit.scoring, "NEUTRAL_PROMPT", "Say something.")
    changed = neutral_prior(backend, TEXTS)
    assert asked.neutral() == len(TEXTS)  # counted under the new prompt
    assert list(changed.values()) == pytest.approx(
        direct(backend, TEXTS, "Say something."), abs=1e-3
    )


@pytest.mark.parametrize("how", ["in place", "through .data", "a new tensor"])
def test_changed_weights_miss(backend: Any, asked: Asked, how: str) -> None:
    neutral_prior(backend, TEXTS)
    weight = backend.model.model.layers[1].mlp.down_proj.weight
    change = torch.randn_like(weight) * 0.5
    with torch.no_grad():
        if how == "in place":
            weight.add_(change)
        elif how == "through .data":  # bumps no version counter
            weight.data.add_(change)
        else:
            backend.model.model.layers[1].mlp.down_proj.weight = torch.nn.Parameter(weight + change)
    changed = neutral_prior(backend, TEXTS)
    assert asked.neutral() == 2 * len(TEXTS)
    assert list(changed.values()) == pytest.approx(direct(backend, TEXTS), abs=1e-3)


def test_another_model_misses(backend: Any, asked: Asked, tiny_model_dir: Path) -> None:
    first = neutral_prior(backend, TEXTS)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in backend.model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.1)
    other = neutral_prior(backend, TEXTS)
    assert asked.neutral() == 2 * len(TEXTS)
    assert other != first


def test_a_hooked_model_is_neither_read_nor_kept(backend: Any, asked: Asked) -> None:
    plain = neutral_prior(backend, TEXTS)
    handle = backend.residual.add({1: torch.ones(backend.hidden_size)})
    try:
        hooked = neutral_prior(backend, TEXTS)
        again = neutral_prior(backend, TEXTS)
    finally:
        handle.remove()
    assert asked.neutral() == 3 * len(TEXTS)  # both hooked calls asked the model
    assert hooked != plain and again == hooked
    assert neutral_prior(backend, TEXTS) == plain  # the hooked numbers were never kept
    assert asked.neutral() == 3 * len(TEXTS)


def test_a_steered_backend_keeps_its_unsteered_prior(
    backend: Any, asked: Asked, tmp_path: Path
) -> None:
    from valuescope.steering.operators import SteeredBackend, Steering, Term
    from valuescope.vectors.contrast import load_contrast
    from valuescope.vectors.extract import extract_vectors

    (tmp_path / "pairs").mkdir()
    contrast = load_contrast(small_contrast(tmp_path / "pairs"))
    vectors = extract_vectors(backend, contrast, seed=0)
    steered = SteeredBackend(backend, Steering(vectors, [Term("power", 1, 8.0)]))
    plain = neutral_prior(backend, TEXTS)
    asked.calls.clear()
    assert neutral_prior(steered, TEXTS) == plain  # the prior is the unsteered model's
    assert asked.neutral() == 0
    items = load_dilemmas("schwartz-dilemmas").items[:2]
    unsteered = LikelihoodMethod()(backend, items, "original", None)
    asked.calls.clear()
    shifted = LikelihoodMethod()(steered, items, "original", None)
    assert asked.neutral() == 0 and asked.calls  # the items were asked, steered
    assert [r.p for r in shifted] != [r.p for r in unsteered]  # the steering still counts


def test_two_writers_keep_every_value(own_cache: Path) -> None:
    own_cache.mkdir(parents=True)
    path = own_cache / "priors.sqlite"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from valuescope.cache import KeptScores\n"
        "store = KeptScores(Path(sys.argv[1]))\n"
        "for i in range(150):\n"
        "    store.put({f'{sys.argv[2]}-{i}-{j}': i + j / 10 for j in range(4)})\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), name]) for name in ("a", "b")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    keys = [f"{n}-{i}-{j}" for n in ("a", "b") for i in range(150) for j in range(4)]
    found = KeptScores(path).get(keys)
    assert len(found) == len(keys)
    assert found["b-149-3"] == pytest.approx(149.3)


def test_a_damaged_store_only_costs_time(backend: Any, asked: Asked, own_cache: Path) -> None:
    own_cache.mkdir(parents=True)
    (own_cache / "priors.sqlite").write_bytes(b"not a database" * 100)
    values = neutral_prior(backend, TEXTS)
    assert list(values.values()) == pytest.approx(direct(backend, TEXTS), abs=1e-3)
    neutral_prior(backend, TEXTS)
    assert asked.neutral() == 2 * len(TEXTS)
