"""The white-box backend: a local transformers model (`hf:`, `gguf:`, `smollm2`)."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from valuescope.backends.base import (
    Context,
    GenerationParams,
    Loglikelihood,
    LoglikelihoodRequest,
    Progress,
)
from valuescope.backends.residual import ResidualStream
from valuescope.backends.spec import ModelSpec
from valuescope.backends.template import render
from valuescope.errors import ModelNotAvailableError, UsageError

Adjust = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
"""A sampling step's hook: (next-token logits rows x vocab, tokens so far, rows done, step) ->
the logits to sample from."""

SHARED_PREFIX = 8
"""Contexts of a batch that start with at least this many common tokens run them once."""
TOKEN_BUDGET = 8192
"""Tokens in one forward pass at most (batch x padded length): what bounds peak memory.
Typical items (a few hundred tokens) batch as before; long ones go fewer at a time."""


class ContextTooLong(UsageError):
    """A request longer than the model's context."""


def _kv_cache(out: Any) -> Any:
    """The KV cache a forward pass returned, under its transformers 5 name or the 4.x one."""
    cache = out.get("cache")
    return cache if cache is not None else out.past_key_values


@dataclass(frozen=True)
class _Encoded:
    context: tuple[int, ...]
    continuation: tuple[int, ...]


class LocalBackend:
    """A causal LM in this process: batched log-likelihoods, generation, residual hooks.

    Log-likelihoods group requests by context, run each context once, and score all of its
    continuations against that context's KV cache. Contexts are left-padded with explicit
    position ids, so the numbers do not depend on padding (tested against a naive path).
    """

    def __init__(
        self,
        spec: ModelSpec,
        model: Any,
        tokenizer: Any,
        name: str,
        batch_size: int = 16,
        layer_path: str | None = None,
        token_budget: int = TOKEN_BUDGET,
    ) -> None:
        self.spec = spec
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._name = name
        self.batch_size = batch_size
        self.token_budget = token_budget
        self._residual = ResidualStream.of(model, layer_path)
        # transformers 5 renamed the KV-cache argument `past_key_values` to `cache` (the old
        # name warns, and goes in 5.40); 4.x knows only the old one.
        forward = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_id: int = int(pad)
        self._weights = _WeightsDigest()

    @classmethod
    def from_dir(
        cls,
        spec: ModelSpec,
        path: str | Path,
        name: str,
        plain_tokenizer: bool = False,
        **kwargs: Any,
    ) -> LocalBackend:
        """Load a Hugging Face model directory (or, for users online, a hub id).

        `plain_tokenizer` reads tokenizer.json directly (for directories valuescope wrote
        itself): ~0.2 s instead of ~2 s through AutoTokenizer.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast
        from transformers.utils import logging as transformers_logging  # own progress bars only

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        try:
            loader = PreTrainedTokenizerFast if plain_tokenizer else AutoTokenizer
            tokenizer = loader.from_pretrained(str(path))
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        except OSError as exc:
            raise ModelNotAvailableError(
                f"could not load model {str(path)!r}: {str(exc).splitlines()[0]}. For hf: give a "
                "local directory with config.json and weights, or a hub id while online."
            ) from exc
        return cls(spec, model, tokenizer, name, **kwargs)

    @property
    def name(self) -> str:
        return self._name

    @property
    def residual(self) -> ResidualStream:
        return self._residual

    @property
    def num_layers(self) -> int:
        return len(self._residual)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def max_tokens(self) -> int | None:
        """The longest sequence the model reads (its context), if its config says."""
        found = getattr(self.model.config, "max_position_embeddings", None)
        return int(found) if found else None

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def _fits(self, length: int, text: str) -> None:
        """A request longer than the context is an error, never a run that swells memory."""
        limit = self.max_tokens
        if limit is not None and length > limit:
            raise ContextTooLong(
                f"a request of {length:,} tokens is longer than {self.name}'s context of "
                f"{limit:,} tokens ({text[:60]!r}...); shorten the item"
            )

    # -- text -------------------------------------------------------------------------------

    def render(self, context: Context) -> str:
        """The exact text the model sees; a chat ends with the assistant turn's opening."""
        return render(self.tokenizer, context)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_pair(self, context: str, continuation: str) -> _Encoded:
        """Token ids of a rendered context and its continuation, split where the scorers
        split them: whitespace at the end of a context belongs to the continuation."""
        stripped = context.rstrip(" ")
        continuation = context[len(stripped) :] + continuation
        ctx = self._encode(stripped)
        whole = self._encode(stripped + continuation)
        if whole[: len(ctx)] != ctx:  # the tokenizer merged across the boundary
            whole = ctx + self._encode(continuation)
        if not ctx:
            raise ValueError("log-likelihood needs a non-empty context")
        cont = whole[len(ctx) :]
        if not cont:
            raise ValueError(f"continuation {continuation!r} encodes to no tokens")
        return _Encoded(tuple(ctx), tuple(cont))

    def score_keys(self, requests: Sequence[LoglikelihoodRequest]) -> list[str] | None:
        """Per request, a key that fixes its log-likelihood under this model as it is now, to
        keep scores across runs: the weights' content and the exact token ids (so the chat
        template and the prompt are in it). None while anything hooks the model (a steering,
        a recording): its numbers are then not the weights' own."""
        if _hooked(self.model):
            return None
        model = self._weights(self.model)
        rendered: dict[Context, str] = {}
        keys = []
        for request in requests:
            if request.context not in rendered:
                rendered[request.context] = self.render(request.context)
            enc = self.encode_pair(rendered[request.context], request.continuation)
            ids = f"{model}|{enc.context}|{enc.continuation}"
            keys.append(hashlib.sha256(ids.encode()).hexdigest())
        return keys

    # -- log-likelihood ---------------------------------------------------------------------

    @torch.inference_mode()
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None = None
    ) -> list[Loglikelihood]:
        rendered: dict[Context, str] = {}
        encoded: list[_Encoded] = []
        for request in requests:
            if request.context not in rendered:
                rendered[request.context] = self.render(request.context)
            encoded.append(self.encode_pair(rendered[request.context], request.continuation))
            self._fits(len(encoded[-1].context) + len(encoded[-1].continuation),
                       rendered[request.context])  # fmt: skip
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, enc in enumerate(encoded):
            groups[enc.context].append(index)
        # Longest contexts first keeps padding small inside each batch.
        ordered = sorted(groups.items(), key=lambda kv: -len(kv[0]))
        results: list[Loglikelihood | None] = [None] * len(requests)
        widths = [len(ctx) + max(len(encoded[i].continuation) for i in members)
                  for ctx, members in ordered]  # fmt: skip
        for batch in _budgeted(ordered, widths, self.batch_size, self.token_budget):
            for index, result in self._score_batch(batch, encoded):
                results[index] = result
            if progress is not None:
                progress(sum(len(members) for _, members in batch))
        return [r for r in results if r is not None]

    def _left_pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids left-padded to one width, and the attention mask (1 = real token)."""
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
        return ids, mask

    def _prefill(
        self, sequences: Sequence[Sequence[int]], shared: int = 0, key: Hashable | None = None
    ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Run left-padded prompts once, keeping their KV cache and last-position logits.

        With `shared` > 0 the sequences' first `shared` tokens (the same in all) run once and
        their cache is copied to every row; each row's padding then sits between that prefix
        and its own tokens, masked like any padding. `key` names the passes for replay.
        Returns the model output, the attention mask and the position ids (padding-aware).
        """
        device = self.model.device
        replay = self._residual.replay
        past: dict[str, Any] = {}
        if shared:
            with replay.pass_of(key, "prefix"):
                head = self.model(
                    input_ids=torch.tensor([list(sequences[0][:shared])], device=device),
                    use_cache=True,
                    logits_to_keep=1,
                )
            cache = _kv_cache(head)
            cache.reorder_cache(torch.zeros(len(sequences), dtype=torch.long, device=device))
            past[self._cache_arg] = cache
        ids, own = self._left_pad([s[shared:] for s in sequences])
        mask = torch.cat([torch.ones((len(sequences), shared), dtype=torch.long), own], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with replay.pass_of(key, "context"):
            out = self.model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions[:, shared:].to(device),
                use_cache=True,
                logits_to_keep=1,
                **past,
            )
        return out, mask, positions

    def _score_batch(
        self, batch: list[tuple[tuple[int, ...], list[int]]], encoded: list[_Encoded]
    ) -> list[tuple[int, Loglikelihood]]:
        # The batch's contexts and continuations fix both forward passes' inputs: the name
        # under which a sweep replays them (residual.replay; plain runs ignore it).
        key = tuple((ctx, tuple(encoded[i].continuation for i in ms)) for ctx, ms in batch)
        replay = self._residual.replay
        if replay.status == "unchecked" and replay.mode_of(key) == "replay":
            real = self._scores(batch, encoded, None)
            try:
                fast = self._scores(batch, encoded, key)
                same = all(
                    abs(a.logprob - b.logprob) <= 1e-5 * max(1.0, abs(b.logprob))
                    for (_, a), (_, b) in zip(fast, real, strict=True)
                )
            except Exception:  # a block that will not be skipped: run every block instead
                same = False
            replay.confirm(same)
            return real
        return self._scores(batch, encoded, key)

    def _scores(
        self,
        batch: list[tuple[tuple[int, ...], list[int]]],
        encoded: list[_Encoded],
        key: tuple[Any, ...] | None,
    ) -> list[tuple[int, Loglikelihood]]:
        device = self.model.device
        replay = self._residual.replay
        contexts = [ctx for ctx, _ in batch]
        shared = _shared_prefix(contexts)
        out, mask, _ = self._prefill(contexts, shared, key)
        first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)

        rows = [(group, index) for group, (_, members) in enumerate(batch) for index in members]
        conts = [encoded[index].continuation for _, index in rows]
        rest_width = max(len(c) for c in conts) - 1
        later: torch.Tensor | None = None
        if rest_width > 0:
            # Every continuation but its last token is fed after its context's cached keys.
            cache = _kv_cache(out)
            cache.reorder_cache(torch.tensor([group for group, _ in rows], device=device))
            cont_ids = torch.full((len(rows), rest_width), self.pad_id, dtype=torch.long)
            cont_mask = torch.zeros((len(rows), rest_width), dtype=torch.long)
            for row, cont in enumerate(conts):
                cont_ids[row, : len(cont) - 1] = torch.tensor(cont[:-1], dtype=torch.long)
                cont_mask[row, : len(cont) - 1] = 1
            group_index = torch.tensor([group for group, _ in rows])
            ctx_len = mask.sum(-1)[group_index]
            cont_pos = ctx_len[:, None] + torch.arange(rest_width)[None, :]
            full_mask = torch.cat([mask[group_index], cont_mask], dim=1)
            with replay.pass_of(key, "continuation"):
                out2 = self.model(
                    input_ids=cont_ids.to(device),
                    attention_mask=full_mask.to(device),
                    position_ids=cont_pos.to(device),
                    use_cache=True,
                    **{self._cache_arg: cache},
                )
            later = torch.log_softmax(out2.logits.float(), dim=-1)
        parts = ("prefix",) * bool(shared) + ("context",) + ("continuation",) * (rest_width > 0)
        replay.complete(key, parts)
        found = []
        for row, (group, index) in enumerate(rows):
            cont = conts[row]
            dists = [first[group]]
            if later is not None:
                dists.extend(later[row, j] for j in range(len(cont) - 1))
            token_lps = tuple(float(dist[tok]) for dist, tok in zip(dists, cont, strict=True))
            greedy = all(int(dist.argmax()) == tok for dist, tok in zip(dists, cont, strict=True))
            found.append((index, Loglikelihood(sum(token_lps), token_lps, greedy)))
        return found

    @torch.inference_mode()
    def loglikelihood_naive(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """One full sequence at a time, no cache, no padding: the reference for the fast path."""
        results = []
        for request in requests:
            enc = self.encode_pair(self.render(request.context), request.continuation)
            ids = torch.tensor([enc.context + enc.continuation], device=self.model.device)
            logprobs = torch.log_softmax(self.model(input_ids=ids).logits[0].float(), dim=-1)
            start = len(enc.context) - 1
            dists = [logprobs[start + j] for j in range(len(enc.continuation))]
            token_lps = tuple(float(d[t]) for d, t in zip(dists, enc.continuation, strict=True))
            greedy = all(int(d.argmax()) == t for d, t in zip(dists, enc.continuation, strict=True))
            results.append(Loglikelihood(sum(token_lps), token_lps, greedy))
        return results

    # -- training ---------------------------------------------------------------------------

    def forward_scores(
        self, requests: Sequence[LoglikelihoodRequest]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Differentiable scores, for training residual-stream edits (the weights stay fixed).

        Returns, per request, the mean log-probability of the continuation's tokens (a tensor
        of shape (n,)) and the log-softmax next-token distributions over the context's
        positions ((context tokens - 1, vocab) each). Gradients flow into whatever the
        residual-stream hooks add; the caller chooses what to differentiate (`backward(inputs=)`).
        """
        encoded = [self.encode_pair(self.render(r.context), r.continuation) for r in requests]
        whole = [e.context + e.continuation for e in encoded]
        width = max(len(s) for s in whole)
        ids = torch.full((len(whole), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(whole), width), dtype=torch.long)
        for row, seq in enumerate(whole):  # right-padded: padding never precedes a real token
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        device = self.model.device
        logits = self.model(
            input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
        ).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        means, contexts = [], []
        for row, enc in enumerate(encoded):
            start, n = len(enc.context), len(enc.continuation)
            targets = ids[row, start : start + n].to(device)
            steps = logprobs[row, start - 1 : start - 1 + n]
            means.append(steps.gather(-1, targets[:, None]).mean())
            contexts.append(logprobs[row, : start - 1])
        return torch.stack(means), contexts

    # -- activations ------------------------------------------------------------------------

    @torch.inference_mode()
    def answer_activations(
        self,
        requests: Sequence[LoglikelihoodRequest],
        layers: Sequence[int],
        progress: Progress | None = None,
    ) -> dict[int, torch.Tensor]:
        """Per request and layer, the residual-stream output averaged over the continuation's
        tokens (the answer, not the prompt): `{layer: (len(requests), hidden) float32}`."""
        encoded = [self.encode_pair(self.render(r.context), r.continuation) for r in requests]
        for enc, request in zip(encoded, requests, strict=True):
            self._fits(len(enc.context) + len(enc.continuation), request.continuation)
        found = {layer: torch.zeros(len(requests), self.hidden_size) for layer in layers}
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].context))
        widths = [len(encoded[i].context) + len(encoded[i].continuation) for i in order]
        device = self.model.device
        for chunk in _budgeted(order, widths, self.batch_size, self.token_budget):
            whole = [encoded[i].context + encoded[i].continuation for i in chunk]
            ids, mask = self._left_pad(whole)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with self.residual.record(layers) as seen:
                self.model(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=positions.to(device),
                    use_cache=False,
                    logits_to_keep=1,
                )
            width = ids.shape[1]
            for row, index in enumerate(chunk):
                start = width - len(encoded[index].continuation)
                for layer in layers:
                    found[layer][index] = seen[layer][0][row, start:].float().mean(0).cpu()
            if progress is not None:
                progress(len(chunk))
        return found

    # -- generation -------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[Context], params: GenerationParams, progress: Progress | None = None
    ) -> list[list[str]]:
        """Batched greedy or sampled generation; samples are reproducible per prompt.

        Each sampled row draws from its own generator seeded by (seed, prompt text, sample
        index), so a prompt's samples do not depend on what else is in the batch, and resumed
        or partial runs reproduce the same answers.
        """
        texts = [self.render(p) for p in prompts]
        outputs: list[list[str]] = []
        if params.temperature == 0:
            for chunk in _chunks(texts, self.batch_size):
                outputs.extend([[d] for d in self._greedy(chunk, params)])
                if progress is not None:
                    progress(len(chunk))
            return [out * params.n for out in outputs]
        per_call = max(1, (self.batch_size * 8) // params.n)
        for chunk in _chunks(texts, per_call):
            rows = self._sample(chunk, params)
            outputs.extend(rows[i * params.n : (i + 1) * params.n] for i in range(len(chunk)))
            if progress is not None:
                progress(len(chunk))
        return outputs

    def _sample(
        self, texts: list[str], params: GenerationParams, adjust: Adjust | None = None
    ) -> list[str]:
        """Temperature / top-p sampling, `params.n` rows per text, one RNG per row (greedy, one
        row per text, when the temperature is 0). `adjust(logits, new, done, step)` may change
        each step's next-token logits (guided decoding tilts them under a reward).

        Written here rather than through `model.generate`, which draws every row from one
        global RNG: batching prompts there would make a prompt's samples depend on its
        neighbours.
        """
        device = self.model.device
        greedy = params.temperature == 0
        n = 1 if greedy else params.n
        generators = [
            torch.Generator().manual_seed(
                (params.seed * 1_000_003 + _stable_hash(text)) * 1_009 + k
            )
            for text in texts
            for k in range(n)
        ]
        # Each prompt is read once; its cache is then repeated for its n rows.
        out, mask, positions = self._prefill([self._encode(t) for t in texts])
        rows = len(texts) * n
        expand = torch.arange(len(texts)).repeat_interleave(n)
        _kv_cache(out).reorder_cache(expand.to(device))
        logits = out.logits[expand.to(device), -1, :]
        mask = mask[expand]
        next_pos = positions[expand, -1] + 1
        stops = self._stop_ids()
        new = torch.full((rows, params.max_new_tokens), self.pad_id, dtype=torch.long)
        done = torch.zeros(rows, dtype=torch.bool)
        for step in range(params.max_new_tokens):
            scores = logits.float().cpu()
            if adjust is not None:
                scores = adjust(scores, new, done, step)
            if greedy:
                token = scores.argmax(-1)
            else:
                probs = torch.softmax(scores / params.temperature, dim=-1)
                if params.top_p < 1.0:
                    probs = _top_p(probs, params.top_p)
                cdf = probs.cumsum(-1)
                draws = torch.stack([torch.rand(1, generator=g) for g in generators])
                draws = draws * cdf[:, -1:]
                token = torch.searchsorted(cdf, draws).clamp(max=probs.shape[-1] - 1).squeeze(-1)
            token = torch.where(done, torch.full_like(token, self.pad_id), token)
            new[:, step] = token
            done |= torch.isin(token, stops)
            if bool(done.all()) or step == params.max_new_tokens - 1:
                break
            mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
            out = self.model(
                input_ids=token[:, None].to(device),
                attention_mask=mask.to(device),
                position_ids=next_pos[:, None].to(device),
                use_cache=True,
                **{self._cache_arg: _kv_cache(out)},
            )
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
        return self._decode(new)

    def _stop_ids(self) -> torch.Tensor:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
        return torch.tensor([int(i) for i in ids], dtype=torch.long)

    def _greedy(self, texts: list[str], params: GenerationParams) -> list[str]:
        """Greedy decoding of a left-padded batch through `model.generate`."""
        ids, mask = self._left_pad([self._encode(t) for t in texts])
        generated = self.model.generate(
            input_ids=ids.to(self.model.device),
            attention_mask=mask.to(self.model.device),
            max_new_tokens=params.max_new_tokens,
            pad_token_id=self.pad_id,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
        )
        return self._decode(generated[:, ids.shape[1] :])

    def _decode(self, new_tokens: torch.Tensor) -> list[str]:
        return [
            str(self.tokenizer.decode(row, skip_special_tokens=True)).strip()
            for row in new_tokens.tolist()
        ]


def _budgeted(
    items: Sequence[Any], widths: Sequence[int], size: int, budget: int
) -> Iterator[list[Any]]:
    """Consecutive batches of at most `size` items whose padded size (items x the widest)
    stays within `budget` tokens; one item alone may exceed it (it fits the context). Items
    come longest first, so the first batches are the small ones."""
    batch: list[Any] = []
    widest = 0
    for item, width in zip(items, widths, strict=True):
        if batch and (len(batch) >= size or (len(batch) + 1) * max(widest, width) > budget):
            yield batch
            batch, widest = [], 0
        batch.append(item)
        widest = max(widest, width)
    if batch:
        yield batch


def _shared_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens that all `sequences` start with, worth running once (0 if too few to pay), and
    always short of the shortest one: each row needs a token of its own for its logits."""
    if len(sequences) < 2:
        return 0
    shortest = min(len(s) for s in sequences)
    first = sequences[0]
    length = 0
    while length < shortest - 1 and all(s[length] == first[length] for s in sequences):
        length += 1
    return length if length >= SHARED_PREFIX else 0


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail beyond the smallest set of tokens whose mass reaches `top_p`."""
    ordered, order = probs.sort(dim=-1, descending=True)
    tail = ordered.cumsum(-1) - ordered >= top_p
    ordered = ordered.masked_fill(tail, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, ordered)


def _stable_hash(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode("utf-8"))


def _hooked(model: torch.nn.Module) -> bool:
    """Whether anything but the weights shapes the model's outputs: forward hooks (global or on
    a module) or a module whose `forward` was replaced on the instance."""
    from torch.nn.modules import module as modules

    if modules._global_forward_hooks or modules._global_forward_pre_hooks:
        return True
    return any(
        m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__ for m in model.modules()
    )


class _WeightsDigest:
    """A digest of a model's weights by content, with its architecture, config and dtype.

    Hashing every byte takes a moment, so a tensor is hashed again only when its stamp moved:
    its storage, its version counter (bumped by in-place writes such as an optimizer step) or
    the sum of every 997th element (which catches writes through `.data`, which bump nothing).
    """

    STRIDE = 997

    def __init__(self) -> None:
        self._memo: dict[str, tuple[tuple[object, ...], str]] = {}

    def __call__(self, model: Any) -> str:
        import transformers

        config = model.config.to_dict()
        for noise in ("_name_or_path", "transformers_version"):
            config.pop(noise, None)
        head = {
            "class": type(model).__name__,
            "config": config,
            "attention": getattr(model.config, "_attn_implementation", None),
            "versions": [torch.__version__, transformers.__version__],
            "device": str(next(model.parameters()).device.type),
        }
        digest = hashlib.sha256(json.dumps(head, sort_keys=True, default=str).encode())
        with torch.no_grad():
            for name, tensor in model.state_dict(keep_vars=True).items():
                digest.update(f"{name}:{self._tensor(name, tensor.detach())};".encode())
        return digest.hexdigest()

    def _tensor(self, name: str, tensor: torch.Tensor) -> str:
        flat = tensor.reshape(-1)
        try:
            version = tensor._version
        except RuntimeError:  # an inference tensor keeps no version counter
            version = -1
        sample = float(flat[:: self.STRIDE].sum(dtype=torch.float64)) if flat.numel() else 0.0
        stamp = (tensor.data_ptr(), version, tuple(tensor.shape), str(tensor.dtype), sample)
        memo = self._memo.get(name)
        if memo is not None and memo[0] == stamp:
            return memo[1]
        raw = flat.contiguous().cpu().view(torch.uint8).numpy()
        found = f"{tensor.dtype}{tuple(tensor.shape)}{hashlib.blake2b(raw.data).hexdigest()}"
        self._memo[name] = (stamp, found)
        return found
