"""The audit: a model's value profile on one instrument, with diagnostics, resumable."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import Backend, WhiteBoxBackend, load_run_backend
from .checkpoint import Checkpoint
from .diagnostics import Diagnostics, diagnose, item_agreement, order_consistency, position_bias
from .errors import UsageError
from .instrument import Instrument, load_instrument
from .modelspec import parse_spec
from .profile import Profile, Ranking, bradley_terry, build_profile
from .scoring import METHODS, ItemResult, Method, OrderResult, WordingName, presentation_orders
from .steering import SteeredBackend, Steering, fluency_cost

CHUNK = 16
AUTO_CANDIDATES_WHITE_BOX = ("likelihood", "likelihood-first-person", "choice")
AUTO_CANDIDATES_BLACK_BOX = ("generate",)
"""Without a capability probe (a backend with no `auto_candidates`), sampling is all that is
certain to work on a black-box model; the server backend probes and offers more."""

ProgressHook = Callable[[str, int, int], None]
"""Called as (phase description, units done now, total units of the phase)."""


@dataclass(frozen=True)
class AuditConfig:
    """Everything that defines an audit run (and so its resume fingerprint)."""

    model: str = "smollm2"
    instrument: str = "schwartz-dilemmas"
    method: str = "auto"
    system: str | None = None
    seed: int = 0
    paraphrase: bool = True
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.method != "auto" and self.method not in METHODS:
            raise UsageError(
                f"--method {self.method!r} is unknown; choose auto, {', '.join(METHODS)}"
            )
        if self.limit is not None and self.limit < 1:
            raise UsageError("--limit must be a positive number of items")


@dataclass
class AuditResult:
    """A finished audit: what was run, the profile, ranking, diagnostics and item results."""

    config: AuditConfig
    model_name: str
    instrument: Instrument
    method: str
    profile: Profile
    paraphrase_profile: Profile | None
    ranking: Ranking | None
    diagnostics: Diagnostics
    results: list[ItemResult]
    paraphrase_results: list[ItemResult]
    method_probe: dict[str, dict[str, float | None]] = field(default_factory=dict)
    seconds: float = 0.0
    server: dict[str, Any] | None = None
    """For server backends: base URL and what the server offered (never the key)."""
    requests: dict[str, Any] | None = None
    """For server backends: requests sent, answered from the cache, retried (by cause)."""
    steering: dict[str, Any] | None = None
    """For steered runs: the vector file, values, layers, coefficients and fluency cost."""


def _encode_results(results: Sequence[ItemResult]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.item_id,
            "wording": r.wording,
            "orders": [
                {"order": list(o.order), "p": list(o.p)}
                | ({"answers": list(o.answers)} if o.answers else {})
                for o in r.orders
            ],
            "combine": r.combine,
        }
        for r in results
    ]


def _decode_results(data: list[dict[str, Any]]) -> list[ItemResult]:
    return [
        ItemResult(
            d["id"],
            d["wording"],
            tuple(
                OrderResult(tuple(o["order"]), tuple(o["p"]), tuple(o.get("answers", ())))
                for o in d["orders"]
            ),
            d.get("combine", "mean"),
        )
        for d in data
    ]


class _Runner:
    """Scores items chunk by chunk through an optional checkpoint."""

    def __init__(
        self,
        backend: Backend,
        checkpoint: Checkpoint | None,
        system: str | None,
        progress: ProgressHook | None,
    ) -> None:
        self.backend = backend
        self.checkpoint = checkpoint
        self.system = system
        self.progress = progress
        self.memory: dict[str, list[ItemResult]] = {}

    def score(
        self, method: Method, instrument: Instrument, n_items: int, wording: WordingName, tag: str
    ) -> list[ItemResult]:
        items = instrument.items[:n_items]
        total = sum(len(presentation_orders(len(i.options))) for i in items)
        label = f"{method.name} · {wording}" + (f" · {tag}" if tag else "")
        hook = self.progress
        if hook:
            hook(label, 0, total)

        def report(n: int) -> None:
            if hook:
                hook(label, n, total)

        out: list[ItemResult] = []
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            key = f"{tag}/{method.name}/{wording}/{start}"
            saved = self.checkpoint.get(key) if self.checkpoint else None
            if key in self.memory:
                done = self.memory[key]
                report(sum(len(r.orders) for r in done))
            elif saved is not None:
                done = _decode_results(saved)
                report(sum(len(r.orders) for r in done))
            else:
                done = method(self.backend, chunk, wording, self.system, report if hook else None)
                if self.checkpoint:
                    self.checkpoint.put(key, _encode_results(done))
            self.memory[key] = done
            out.extend(done)
        return out


def probe_methods(
    runner: _Runner, instrument: Instrument, candidates: Sequence[str], n_items: int
) -> dict[str, dict[str, float | None]]:
    """Measured validity of each candidate on the first chunk of items.

    validity = paraphrase agreement (correlation of an item's P(first option) between its two
    wordings) minus |position bias|; without paraphrases, order consistency stands in for the
    agreement. The chunk is the main run's first chunk, so the chosen method reuses it.
    """
    probe: dict[str, dict[str, float | None]] = {}
    n = min(CHUNK, n_items)
    for name in candidates:
        method = METHODS[name]()
        results = runner.score(method, instrument, n, "original", "")
        consistency, bias = order_consistency(results), position_bias(results)
        agreement = None
        if instrument.has_paraphrases:
            agreement = item_agreement(
                results, runner.score(method, instrument, n, "paraphrase", "")
            )
            base = agreement or 0.0
        else:
            base = consistency if consistency is not None else 1.0
        probe[name] = {
            "paraphrase_agreement": agreement,
            "order_consistency": consistency,
            "position_bias": bias,
            "validity": base - abs(bias or 0.0),
        }
    return probe


def run_audit(
    config: AuditConfig,
    backend: Backend | None = None,
    out: Path | None = None,
    progress: ProgressHook | None = None,
    backend_options: Mapping[str, Any] | None = None,
    instrument: Instrument | None = None,
    steering: Steering | None = None,
) -> AuditResult:
    """Run an audit; with `out`, finished chunks are saved and a rerun resumes from them.

    `backend_options` go to the backend factory (for servers: `settings`, `cache_path`; the
    response cache defaults to `out/responses.sqlite`, so a resumed run re-sends nothing
    that finished). `instrument` replaces loading `config.instrument` (for instruments
    converted from other formats, see `valuescope.loaders`). `steering` runs the whole audit
    with value vectors added (white-box backends) and records it with its fluency cost.
    """
    started = time.perf_counter()
    spec = parse_spec(config.model)  # cheap checks first: a typo should not wait for a model
    instrument = instrument or load_instrument(config.instrument)
    if config.paraphrase and not instrument.has_paraphrases:
        raise UsageError(
            f"instrument {instrument.name!r} has items without a paraphrase; add them or pass "
            "--no-paraphrase"
        )

    def black_box(raw: str) -> UsageError:
        return UsageError(
            f"--steer needs a local model (hidden states): smollm2, hf:<dir> or gguf:<file>; "
            f"{raw!r} is black-box"
        )

    if steering is not None and backend is None and spec.kind == "openai":
        raise black_box(spec.raw)  # before the server backend opens its response cache
    backend = backend or load_run_backend(spec, out, backend_options)
    if steering is not None:
        if not isinstance(backend, WhiteBoxBackend):
            raise black_box(backend.spec.raw)
        if steering.fluency_cost is None:
            steering.fluency_cost = fluency_cost(backend, steering)
        steered = SteeredBackend(backend, steering)
        return _audit(config, steered, out, progress, instrument, started, steering)
    return _audit(config, backend, out, progress, instrument, started, None)


def _audit(
    config: AuditConfig,
    backend: Backend,
    out: Path | None,
    progress: ProgressHook | None,
    instrument: Instrument,
    started: float,
    steering: Steering | None,
) -> AuditResult:
    n_items = min(config.limit or len(instrument.items), len(instrument.items))
    checkpoint = None
    if out is not None:
        fingerprint = {
            "model": backend.spec.raw,
            "instrument": instrument.sha256,
            "method": config.method,
            "system": config.system,
            "seed": config.seed,
            "items": n_items,
            **({"steering": steering.fingerprint()} if steering else {}),
        }
        checkpoint = Checkpoint(out, fingerprint)
    runner = _Runner(backend, checkpoint, config.system, progress)
    probe: dict[str, dict[str, float | None]] = {}
    method_name = config.method
    offered = getattr(backend, "auto_candidates", None)
    check = getattr(backend, "check_method", None)
    if method_name != "auto" and check is not None:
        check(method_name)
    if method_name == "auto":
        white = isinstance(backend, WhiteBoxBackend)
        if offered is not None:
            candidates = offered()
        else:
            candidates = AUTO_CANDIDATES_WHITE_BOX if white else AUTO_CANDIDATES_BLACK_BOX
        if len(candidates) == 1:
            method_name = candidates[0]
        else:
            probe = probe_methods(runner, instrument, candidates, n_items)
            method_name = max(candidates, key=lambda m: probe[m]["validity"] or 0.0)
    method = METHODS[method_name]()
    results = runner.score(method, instrument, n_items, "original", "")
    para_results = (
        runner.score(method, instrument, n_items, "paraphrase", "") if config.paraphrase else []
    )
    items = instrument.items[:n_items]
    profile = build_profile(instrument.taxonomy, items, results, config.seed)
    para_profile = (
        build_profile(instrument.taxonomy, items, para_results, config.seed)
        if para_results
        else None
    )
    return AuditResult(
        config=config,
        model_name=backend.name,
        instrument=instrument,
        method=method_name,
        profile=profile,
        paraphrase_profile=para_profile,
        ranking=bradley_terry(instrument.taxonomy, items, results, config.seed),
        diagnostics=diagnose(results, profile, para_profile),
        results=results,
        paraphrase_results=para_results,
        method_probe=probe,
        seconds=time.perf_counter() - started,
        server=backend.describe() if hasattr(backend, "describe") else None,
        requests=backend.stats.as_dict() if hasattr(backend, "stats") else None,
        steering=steering.as_dict() if steering else None,
    )
