"""Value vectors: where each value lives in the residual stream, per layer, with probe accuracy.

For every contrastive pair the model reads the situation and one of the two answers; the
residual stream is averaged over the answer's tokens at every layer. Per value and layer, the
registered aggregators (aggregators.py) fit a direction each on a training share of the pairs:
the difference of means, the first principal direction of the paired differences (uncentred,
so the common shift counts; repeng's `pca_diff` centres them), and an L2 logistic probe. Each
is scored on the held-out pairs (accuracy of telling an upholding answer from an opposing one,
threshold from the training pairs), and the layer where the logistic probe does best is the
value's layer (ties, common when several layers classify every held-out answer right, go to
the layer whose probe separates the held-out stances most, in pooled standard deviations).
`METHODS` says which direction the file stores: one aggregator's, or for `optimized` a
direction trained onward from mean-diff's at the value's layer (optimize.py).

Directions are stored in "class-gap units": the unit direction, oriented toward upholding,
times the gap between the mean projections of upholding and opposing answers, so coefficient 1
moves an activation by the distance that separates the two stances, whichever method found the
direction. Reading a text projects it on the unit direction and maps that to P(upholds) with a
logistic calibration fitted on the held-out pairs. Orientation, gap, midpoint and calibration
follow one rule for every direction (measure.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from valuescope.backends.base import LoglikelihoodRequest, WhiteBoxBackend
from valuescope.errors import UsageError
from valuescope.progress import ProgressHook
from valuescope.vectors.aggregators import AGGREGATORS, directions
from valuescope.vectors.contrast import ContrastPair, ContrastSet
from valuescope.vectors.measure import (
    held_out_accuracy,
    measure_direction,
    oriented,
    read_probability,
    separation_of,
)
from valuescope.vectors.optimize import TrainedDirection, Training, optimized

PROBE = "logistic"
"""The aggregator whose held-out accuracy (then separation) chooses each value's layer."""
FORMAT = "valuescope.vectors/1"
POSITIONS = "mean over the stance's tokens (chat answer: situation, then stance)"


@dataclass(frozen=True)
class LayerVector:
    """One value's direction at one layer, in class-gap units, with its reading calibration."""

    vector: np.ndarray
    accuracy: dict[str, float]
    """Held-out accuracy of each method's direction at this layer."""
    midpoint: float
    """Projection (on the unit direction) halfway between the two stances' training means."""
    calibration: tuple[float, float]
    """P(upholds) = sigmoid(a * (projection - midpoint) + b), fitted on held-out pairs."""
    separation: float = float("nan")
    """Held-out separation of the logistic probe: gap between the stances' mean projections
    over their pooled standard deviation (breaks ties between layers at the same accuracy)."""

    @property
    def probe_accuracy(self) -> float:
        """The logistic probe's held-out accuracy (an imported vector's own accuracy)."""
        return self.accuracy.get(PROBE, next(iter(self.accuracy.values()), float("nan")))

    @property
    def gap(self) -> float:
        return float(np.linalg.norm(self.vector))

    @property
    def unit(self) -> np.ndarray:
        return self.vector / max(self.gap, 1e-12)


@dataclass
class ValueVectors:
    """All layers of one value, and the layer chosen by held-out probe accuracy."""

    value: str
    layers: dict[int, LayerVector]
    best_layer: int
    n_train: int
    n_held_out: int

    @property
    def best(self) -> LayerVector:
        return self.layers[self.best_layer]


@dataclass
class VectorSet:
    """Value vectors of one model, as written to and read from the safetensors file."""

    model: str
    spec: str
    hidden_size: int
    num_layers: int
    method: str
    taxonomy: str
    contrast: dict[str, Any]
    values: dict[str, ValueVectors]
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, value: str) -> ValueVectors:
        if value not in self.values:
            raise UsageError(
                f"no vector for value {value!r}; this file has {', '.join(self.values)}"
            )
        return self.values[value]

    def save(self, path: Path) -> Path:
        from safetensors.numpy import save_file

        tensors = {
            f"{value}/{layer}": lv.vector.astype(np.float32)
            for value, vv in self.values.items()
            for layer, lv in vv.layers.items()
        }
        info = {
            value: {
                "best_layer": vv.best_layer,
                "n_train": vv.n_train,
                "n_held_out": vv.n_held_out,
                "layers": {
                    str(layer): {
                        "accuracy": lv.accuracy,
                        "midpoint": lv.midpoint,
                        "calibration": list(lv.calibration),
                        "separation": lv.separation,
                    }
                    for layer, lv in vv.layers.items()
                },
            }
            for value, vv in self.values.items()
        }
        metadata = {
            "format": FORMAT,
            "model": self.model,
            "spec": self.spec,
            "hidden_size": str(self.hidden_size),
            "num_layers": str(self.num_layers),
            "method": self.method,
            "positions": POSITIONS,
            "taxonomy": self.taxonomy,
            "contrast": json.dumps(self.contrast),
            "probe_accuracy": json.dumps(
                {
                    value: {str(k): lv.probe_accuracy for k, lv in vv.layers.items()}
                    for value, vv in self.values.items()
                }
            ),
            "values": json.dumps(info),
            "seconds": f"{self.seconds:.1f}",
            "extra": json.dumps(self.extra),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | Path) -> VectorSet:
        from safetensors import safe_open

        path = Path(path).expanduser()
        if not path.is_file():
            raise UsageError(f"no vector file {str(path)!r}; make one with `valuescope vectors`")
        try:
            with safe_open(str(path), framework="numpy") as handle:
                metadata = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors raises its own error types on a bad header
            raise UsageError(f"{path}: not a safetensors file ({exc})") from None
        if metadata.get("format") != FORMAT:
            raise UsageError(
                f"{path}: not a valuescope vector file (metadata format "
                f"{metadata.get('format')!r}); import another tool's vectors with "
                "`valuescope vectors-import FILE --value VALUE`"
            )
        try:
            return cls._from_file(metadata, tensors)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise UsageError(
                f"{path}: damaged valuescope vector file ({what}); make it again with "
                "`valuescope vectors`"
            ) from None

    @classmethod
    def _from_file(cls, metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> VectorSet:
        """The set a file's metadata and tensors describe (KeyError/ValueError if damaged)."""
        hidden_size = int(metadata["hidden_size"])
        info = json.loads(metadata["values"])
        values: dict[str, ValueVectors] = {}
        for value, entry in info.items():
            layers = {}
            for layer, data in entry["layers"].items():
                vector = tensors[f"{value}/{layer}"].astype(np.float64)
                if vector.shape != (hidden_size,):
                    raise ValueError(
                        f"tensor {value}/{layer} has shape {vector.shape}, not ({hidden_size},)"
                    )
                layers[int(layer)] = LayerVector(
                    vector,
                    {k: float(v) for k, v in data["accuracy"].items()},
                    float(data["midpoint"]),
                    (float(data["calibration"][0]), float(data["calibration"][1])),
                    float(data.get("separation", float("nan"))),
                )
            best = int(entry["best_layer"])
            if best not in layers:
                raise ValueError(f"{value}'s best layer {best} has no tensor")
            values[value] = ValueVectors(
                value, layers, best, int(entry["n_train"]), int(entry["n_held_out"])
            )
        if not values:
            raise ValueError("it holds no value")
        return cls(
            model=metadata["model"],
            spec=metadata["spec"],
            hidden_size=hidden_size,
            num_layers=int(metadata["num_layers"]),
            method=metadata["method"],
            taxonomy=metadata["taxonomy"],
            contrast=json.loads(metadata["contrast"]),
            values=values,
            seconds=float(metadata.get("seconds", 0.0)),
            extra=json.loads(metadata.get("extra", "{}")),
        )


def contrast_requests(contrast: ContrastSet) -> list[LoglikelihoodRequest]:
    """Two requests per pair, upholding answer first."""
    return [
        LoglikelihoodRequest(pair.chat, answer)
        for pair in contrast.pairs
        for answer in pair.answers()
    ]


class Trainer(Protocol):
    """Trains one value's direction at one layer onward from a stored one (unit direction and
    class gap), on the value's training pairs."""

    def __call__(
        self,
        backend: WhiteBoxBackend,
        pairs: Sequence[ContrastPair],
        layer: int,
        start: np.ndarray,
        gap: float,
        training: Training,
        progress: ProgressHook | None,
        label: str,
    ) -> TrainedDirection: ...


@dataclass(frozen=True)
class Method:
    """An extraction method: the aggregator whose direction every layer stores and, for a
    trained method, the trainer that replaces the direction at each value's best layer."""

    aggregator: str
    trainer: Trainer | None = None


METHODS: dict[str, Method] = {
    **{name: Method(name) for name in AGGREGATORS},
    "optimized": Method("mean-diff", optimized),
}
"""`--method`: each aggregator alone, or `optimized` (mean-diff everywhere, then trained at the
value's best layer to move the model's preference; optimize.py)."""


def check_extraction(contrast: ContrastSet, method: str, held_out: float, seed: int) -> None:
    """The settings of an extraction, checked before any model runs: a known method, and a
    held-out share that leaves every value pairs to fit and pairs to score."""
    if method not in METHODS:
        raise UsageError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if not 0 < held_out < 1:
        raise UsageError(f"--held-out {held_out}: must be between 0 and 1 (a share of pairs)")
    for value in contrast.values:
        train, _ = contrast.split(value, held_out, seed)
        if not train:
            n = len(contrast.of(value))
            raise UsageError(
                f"--held-out {held_out} keeps all {n} of {value}'s pairs out, leaving none to "
                "fit a vector on; lower it (default 0.3)"
            )


class Split(NamedTuple):
    """One layer's answer activations (n, d) of a value's pairs: training and held-out."""

    tr_pos: np.ndarray
    tr_neg: np.ndarray
    te_pos: np.ndarray
    te_neg: np.ndarray

    @classmethod
    def of(cls, acts: torch.Tensor, train: list[int], test: list[int]) -> Split:
        """`acts` holds each pair's upholding answer then its opposing one; `train` and `test`
        are pair indices."""
        a = acts.double().numpy()
        pos, neg = a[0::2], a[1::2]
        return cls(pos[train], neg[train], pos[test], neg[test])


def layer_vector(
    aggregator: str, tr_pos: np.ndarray, tr_neg: np.ndarray, te_pos: np.ndarray, te_neg: np.ndarray
) -> LayerVector:
    """One value's layer: every aggregator fitted on the training answers and scored on the
    held-out ones, and `aggregator`'s direction measured (oriented, scaled, calibrated) for
    the file."""
    found = {
        name: oriented(unit, tr_pos, tr_neg) for name, unit in directions(tr_pos, tr_neg).items()
    }
    accuracy = {
        name: held_out_accuracy(unit, tr_pos, tr_neg, te_pos, te_neg)[0]
        for name, unit in found.items()
    }
    probe = found[PROBE]
    measured = measure_direction(found[aggregator], tr_pos, tr_neg, te_pos, te_neg)
    return LayerVector(
        measured.vector,
        accuracy,
        measured.midpoint,
        measured.calibration,
        separation_of(te_pos @ probe, te_neg @ probe),
    )


def extract_vectors(
    backend: WhiteBoxBackend,
    contrast: ContrastSet,
    method: str = "mean-diff",
    held_out: float = 0.3,
    seed: int = 0,
    layers: Sequence[int] | None = None,
    progress: ProgressHook | None = None,
    training: Training | None = None,
) -> VectorSet:
    """Value vectors of every value in `contrast`, at every layer (or `layers`).

    `method="optimized"` saves mean-diff vectors at every layer but the value's best one,
    where the mean-diff direction is the start of a trained one (optimize.py; `training`)."""
    check_extraction(contrast, method, held_out, seed)
    how = METHODS[method]
    started = time.perf_counter()
    chosen = list(layers) if layers is not None else list(range(len(backend.residual)))
    requests = contrast_requests(contrast)
    label = "reading contrastive pairs"

    def report(n: int) -> None:
        if progress:
            progress(label, n, len(requests))

    if progress:
        progress(label, 0, len(requests))
    acts = backend.answer_activations(requests, chosen, report)
    index = {pair.id: k for k, pair in enumerate(contrast.pairs)}
    values: dict[str, ValueVectors] = {}
    extra: dict[str, Any] = {}
    t = training or Training()
    if how.trainer is not None:
        extra["training"] = {"steps": t.steps, "kl_weight": t.kl_weight, "lr": t.lr,
                             "beta": t.beta, "radius": t.radius}  # fmt: skip
    for value in contrast.values:
        train, test = contrast.split(value, held_out, seed)
        rows_tr = [index[p.id] for p in train]
        rows_te = [index[p.id] for p in test]
        split = {layer: Split.of(acts[layer], rows_tr, rows_te) for layer in chosen}
        layer_vectors = {layer: layer_vector(how.aggregator, *split[layer]) for layer in chosen}
        best = max(
            chosen, key=lambda k: (layer_vectors[k].probe_accuracy, layer_vectors[k].separation, -k)
        )
        if how.trainer is not None:
            before = layer_vectors[best]
            trained = how.trainer(backend, train, best, before.unit, before.gap, t, progress,
                                f"training {value} @ layer {best}")  # fmt: skip
            measured = measure_direction(trained.unit, *split[best])
            layer_vectors[best] = LayerVector(
                measured.vector,
                {**before.accuracy, method: measured.accuracy},
                measured.midpoint,
                measured.calibration,
                before.separation,
            )
            extra.setdefault(method, {})[value] = {
                "layer": best,
                "preference_loss": [round(x, 5) for x in trained.preference_loss],
                "kl": [round(x, 5) for x in trained.kl],
                "cosine_to_mean_diff": round(trained.cosine_to_start, 4),
            }
        values[value] = ValueVectors(value, layer_vectors, best, len(train), len(test))
    return VectorSet(
        model=backend.name,
        spec=backend.spec.raw,
        hidden_size=backend.hidden_size,
        num_layers=len(backend.residual),
        method=method,
        taxonomy=contrast.taxonomy.name,
        contrast={
            "name": contrast.name,
            "sha256": contrast.sha256,
            "pairs": len(contrast.pairs),
            "held_out": held_out,
            "seed": seed,
        },
        values=values,
        seconds=time.perf_counter() - started,
        extra=extra,
    )


@torch.inference_mode()
def read_texts(
    backend: WhiteBoxBackend,
    vectors: VectorSet,
    texts: Sequence[str],
    context: Any = None,
    progress: ProgressHook | None = None,
) -> dict[str, list[float]]:
    """P(upholds the value) per value for each text, read at each value's best layer.

    Texts are read as the model's answer to `context` (one chat for all, or one per text;
    default: the generic question the contrastive pairs use), at the same positions the
    vectors were fitted on.
    """
    from valuescope.backends.base import Chat
    from valuescope.vectors.contrast import QUESTIONS

    if context is None:
        context = Chat(QUESTIONS[0])
    contexts = list(context) if isinstance(context, (list, tuple)) else [context] * len(texts)
    if len(contexts) != len(texts):
        raise ValueError(f"{len(contexts)} contexts for {len(texts)} texts")
    layers = sorted({vv.best_layer for vv in vectors.values.values()})
    label = "reading texts"

    def report(n: int) -> None:
        if progress:
            progress(label, n, len(texts))

    requests = [LoglikelihoodRequest(c, text) for c, text in zip(contexts, texts, strict=True)]
    acts = backend.answer_activations(requests, layers, report)
    out: dict[str, list[float]] = {}
    for value, vv in vectors.values.items():
        lv = vv.best
        projection = acts[vv.best_layer].double().numpy() @ lv.unit
        out[value] = [float(p) for p in read_probability(projection, lv.midpoint, lv.calibration)]
    return out


def check_model(vectors: VectorSet, backend: WhiteBoxBackend) -> None:
    """Vectors only fit the model they were made from: same hidden size and layer count."""
    if vectors.hidden_size != backend.hidden_size or vectors.num_layers != len(backend.residual):
        raise UsageError(
            f"these vectors were made for {vectors.model} (hidden size {vectors.hidden_size}, "
            f"{vectors.num_layers} layers); model {backend.spec.raw!r} has hidden size "
            f"{backend.hidden_size} and {len(backend.residual)} layers; use --model "
            f"{vectors.spec}, or make vectors for this model with `valuescope vectors --model "
            f"{backend.spec.raw}`"
        )


@dataclass(frozen=True)
class AnswerReading:
    """A run's generated answers read by the vectors, and how the reading fits the choices.

    `probs[value][k]` is P(answer k upholds value). `agreement[value]` compares answers that
    chose the option upholding the value with answers that chose the opposing one, on items
    where exactly one option upholds it: mean P for each group and their difference, which a
    detector that reads the value should make positive.
    """

    records: list[dict[str, Any]]
    probs: dict[str, list[float]]
    agreement: dict[str, dict[str, float | int | None]]


def read_answers(
    backend: WhiteBoxBackend,
    vectors: VectorSet,
    records: Sequence[dict[str, Any]],
    progress: ProgressHook | None = None,
) -> AnswerReading:
    """Read each generated answer as the reply to the question it answered."""
    from valuescope.backends.base import Chat

    contexts = [Chat(r["prompt"], r.get("system")) for r in records]
    probs = read_texts(backend, vectors, [r["answer"] for r in records], contexts, progress)
    agreement: dict[str, dict[str, float | int | None]] = {}
    for value, p in probs.items():
        chose_up: list[float] = []
        chose_down: list[float] = []
        for k, record in enumerate(records):
            options = record.get("option_values") or []
            upholding = [i for i, vals in enumerate(options) if value in vals]
            if record.get("option") is None or len(upholding) != 1:
                continue
            (chose_up if record["option"] == upholding[0] else chose_down).append(p[k])
        up = float(np.mean(chose_up)) if chose_up else None
        down = float(np.mean(chose_down)) if chose_down else None
        agreement[value] = {
            "upholding_chosen": up,
            "opposing_chosen": down,
            "difference": up - down if up is not None and down is not None else None,
            "n_upholding": len(chose_up),
            "n_opposing": len(chose_down),
        }
    return AnswerReading(list(records), probs, agreement)
