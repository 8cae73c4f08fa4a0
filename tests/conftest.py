"""Shared fixtures: an offline environment, a tiny random Llama, and the real embedded model."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# No test may reach a hub: set before transformers is imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"

# Markers follow from the fixtures a test uses, so `make check` (no model, server or browser
# beyond the tiny one) cannot miss a test that needs one.
NEEDS = {"smollm2": "slow", "server": "server", "proxy": "server", "browser": "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in NEEDS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets a shared per-session cache dir, never the user's."""
    monkeypatch.setenv("VALUESCOPE_CACHE", str(_session_cache(tmp_path_factory)))


_CACHE: list[Path] = []


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    if not _CACHE:
        _CACHE.append(factory.mktemp("valuescope-cache"))
    return _CACHE[0]


class ModelReached(AssertionError):
    """A model load was attempted: the input passed every check that needs no model."""


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model raises `ModelReached`: checks that must come first are tested with it,
    and a test that expects the model to be reached finds the name in the traceback."""
    import valuescope.backends

    def reached(*args: Any, **kwargs: Any) -> Any:
        raise ModelReached("a model was loaded before the usage error")

    monkeypatch.setattr(valuescope.backends, "load_white_box", reached)
    monkeypatch.setattr(valuescope.backends, "load_backend", reached)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face directory with a random-init 4-layer Llama and the fixture tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    target = tmp_path_factory.mktemp("tiny-llama")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(FIXTURES / "tiny-llama" / name, target / name)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig.from_pretrained(target))
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(target)  # fails early if the fixture tokenizer is broken
    return target


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir: Path) -> Iterator[object]:
    from valuescope import load_backend

    yield load_backend(f"hf:{tiny_model_dir}", batch_size=3)


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The real embedded model (first load dequantizes into this session's cache)."""
    from valuescope import load_backend

    os.environ["VALUESCOPE_CACHE"] = str(_session_cache(tmp_path_factory))
    yield load_backend("smollm2")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium (Debian's chromium and chromium-driver, which make test installs)."""
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium and chromium-driver (make test installs them)")
        pytest.skip("chromium/chromedriver not installed (make test installs them as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1100,1600",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
