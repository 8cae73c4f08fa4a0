"""The `valuescope` command line: thin wrappers over the public API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import ValuescopeError

app = typer.Typer(
    name="valuescope",
    help="Measure, explain and steer the human values of language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True)
out = Console()

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Model spec: smollm2 (embedded), hf:<dir or hub id>, gguf:<file>, "
        "openai:<model>@<base url>.",
    ),
]

InstrumentOpt = Annotated[
    str, typer.Option("--instrument", "-i", help="Built-in instrument name or file path.")
]
MethodOpt = Annotated[
    str,
    typer.Option(
        help="Scoring method: auto, likelihood, likelihood-first-person, choice or generate."
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder; rerunning resumes.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for bootstrap CIs and sampling.")]
LimitOpt = Annotated[int | None, typer.Option(help="Score only the first N items (quick looks).")]

# Options for openai: models (servers); each refuses to be set for a local model.
ApiKeyEnvOpt = Annotated[
    str | None,
    typer.Option(
        help="Environment variable holding the server's API key (default OPENAI_API_KEY); "
        "the key itself is never written anywhere."
    ),
]
ConcurrencyOpt = Annotated[
    int | None, typer.Option(help="Requests in flight at once (server models; default 8).")
]
TimeoutOpt = Annotated[
    float | None, typer.Option(help="Seconds before a request counts as failed (default 120).")
]
MaxRetriesOpt = Annotated[
    int | None,
    typer.Option(help="Retries per request on 429, 5xx, timeouts and dropped connections (8)."),
]
MaxRpsOpt = Annotated[
    float | None, typer.Option(help="Cap on requests started per second (default: no cap).")
]
TokenBudgetOpt = Annotated[
    int | None,
    typer.Option(help="Stop after this many tokens (prompt + completion) sent; rerun resumes."),
]
TokenizerOpt = Annotated[
    str | None,
    typer.Option(
        help="Local tokenizer of the served model (smollm2, gguf:<file>, hf:<dir>): lets the "
        "likelihood methods score text through the completions endpoint."
    ),
]


def _server_options(
    model: str,
    api_key_env: str | None,
    concurrency: int | None,
    timeout: float | None,
    max_retries: int | None,
    max_rps: float | None,
    token_budget: int | None,
    tokenizer: str | None,
) -> dict[str, object]:
    """Backend options for a server model; server flags given for a local model are an error."""
    from dataclasses import replace

    from .backends.retry import RetryPolicy
    from .backends.server import ServerSettings
    from .errors import UsageError
    from .modelspec import parse_spec

    given = {
        "--api-key-env": api_key_env,
        "--concurrency": concurrency,
        "--timeout": timeout,
        "--max-retries": max_retries,
        "--max-rps": max_rps,
        "--token-budget": token_budget,
        "--tokenizer": tokenizer,
    }
    if parse_spec(model).kind != "openai":
        used = [flag for flag, value in given.items() if value is not None]
        if used:
            raise UsageError(
                f"{', '.join(used)} apply to server models (openai:<model>@<url>) only; "
                f"{model!r} runs locally"
            )
        return {}
    settings = ServerSettings()
    changes: dict[str, Any] = {
        "api_key_env": api_key_env,
        "concurrency": concurrency,
        "timeout": timeout,
        "max_rps": max_rps,
        "token_budget": token_budget,
        "tokenizer": tokenizer,
    }
    settings = replace(settings, **{k: v for k, v in changes.items() if v is not None})
    if max_retries is not None:
        settings = replace(settings, retry=RetryPolicy(max_retries=max_retries))
    return {"settings": settings}


def _version(value: bool) -> None:
    if value:
        out.print(f"valuescope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Measure, explain and steer the human values of language models."""


@app.command()
def audit(
    model: ModelOpt = "smollm2",
    instrument: Annotated[
        list[str] | None,
        typer.Option(
            "--instrument",
            "-i",
            help="Built-in instrument name or file path (default schwartz-dilemmas). Repeat it "
            "to audit several instruments of one taxonomy and measure how far they agree.",
        ),
    ] = None,
    method: MethodOpt = "auto",
    system: Annotated[
        str | None, typer.Option(help="System prompt for every item (e.g. a persona).")
    ] = None,
    out_dir: OutOpt = Path("runs/audit"),
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    paraphrase: Annotated[
        bool, typer.Option(help="Also score the second wording (paraphrase consistency).")
    ] = True,
    api_key_env: ApiKeyEnvOpt = None,
    concurrency: ConcurrencyOpt = None,
    timeout: TimeoutOpt = None,
    max_retries: MaxRetriesOpt = None,
    max_rps: MaxRpsOpt = None,
    token_budget: TokenBudgetOpt = None,
    tokenizer: TokenizerOpt = None,
    alpha: Annotated[
        bool,
        typer.Option(
            help="Likert questionnaires: also rate under every built-in persona prompt and "
            "report Cronbach's alpha per value over those respondents (11x the work)."
        ),
    ] = False,
    budget: Annotated[
        int | None,
        typer.Option(
            help="Pairwise instruments: comparisons to make (default 4 per outcome); pairs "
            "after a random start are chosen where the fitted preference is least certain."
        ),
    ] = None,
    value_map: Annotated[
        Path | None,
        typer.Option(
            help="For dailydilemmas:, utility-options: and table: instruments: YAML mapping "
            "their value names to the taxonomy's ids."
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            help="For table:<csv|jsonl|hf:dataset> instruments: which column holds each field, "
            "e.g. text=statement,value=trait,keyed=key (likert); text=situation,option=a|b,"
            "values=va|vb (dilemma); text=outcome,values=category (pairwise)."
        ),
    ] = None,
    taxonomy: Annotated[
        str, typer.Option(help="Taxonomy for dailydilemmas:, utility-options: and table: sources.")
    ] = "schwartz",
    steer: Annotated[
        str | None,
        typer.Option(
            help="Steer while auditing: FILE:value=coef[,value@layer=coef...] with a vector file "
            "from `valuescope vectors` (layer defaults to the value's best); local models only."
        ),
    ] = None,
    steer_mode: Annotated[
        str, typer.Option(help="add (coef x vector everywhere) or gated (only where needed).")
    ] = "add",
) -> None:
    """Audit a model: value profile with 95% CIs, diagnostics, results.json, items.csv, card."""
    from .instrument import instrument_kind

    options = _server_options(
        model, api_key_env, concurrency, timeout, max_retries, max_rps, token_budget, tokenizer
    )
    from .errors import UsageError
    from .loaders import split_source

    names = instrument or ["schwartz-dilemmas"]
    sources = {name: source for name in names if (source := split_source(name))}
    if value_map is not None and not sources:
        raise UsageError(
            "--value-map applies to dailydilemmas:, utility-options: and table: instruments"
        )
    if columns is not None and not any(s[0] == "table" for s in sources.values()):
        raise UsageError("--columns applies to table:<file or hf:dataset> instruments")
    # Converted instruments load (and a typo fails) here, before any model loads.
    converted = {
        name: _convert(prefix, location, value_map, columns, taxonomy)
        for name, (prefix, location) in sources.items()
    }
    kinds = [converted[n].kind if n in converted else instrument_kind(n) for n in names]
    if budget is not None and "pairwise" not in kinds:
        raise UsageError("--budget applies to pairwise instruments (e.g. schwartz-outcomes)")
    if alpha and "likert" not in kinds:
        raise UsageError("--alpha applies to likert questionnaires (e.g. schwartz-portraits)")
    steering = None
    if steer is not None:
        from .steering import check_mode, parse_steer

        if set(kinds) != {"dilemma"}:
            raise UsageError("--steer applies to dilemma instruments in this version")
        steering = parse_steer(steer, check_mode(steer_mode, "--steer-mode"))

    def one(name: str, kind: str, where: Path) -> None:
        ready = converted.get(name)
        if kind == "likert":
            _audit_likert(model, name, method, system, where, seed, limit, alpha, options, ready)
        elif kind == "pairwise":
            _audit_pairwise(model, name, system, where, seed, budget, options, ready)
        else:
            paraphrase_on = paraphrase and ready is None
            _audit_dilemmas(model, name, method, system, where, seed, limit, paraphrase_on,
                            options, ready, steering)  # fmt: skip

    if len(names) == 1:
        one(names[0], kinds[0], out_dir)
        return
    _audit_several(names, kinds, out_dir, seed, one)


def _convert(
    prefix: str, location: str, value_map: Path | None, columns: str | None, taxonomy: str
) -> Any:
    """A DailyDilemmas, Utility Engineering or generic table source as an instrument; names
    the mapping does not cover and items dropped for want of a value are reported."""
    from .loaders import load_daily_dilemmas, load_table, load_utility_options, parse_columns

    converted: Any
    if prefix == "dailydilemmas":
        converted, unmapped, dropped = load_daily_dilemmas(location, value_map, taxonomy)
        units = "dilemmas"
    elif prefix == "utility-options":
        converted, unmapped, dropped = load_utility_options(location, value_map, taxonomy)
        units = "options"
    else:
        converted, unmapped, dropped = load_table(
            location, parse_columns(columns), value_map, taxonomy
        )
        units = "rows"
    if unmapped:
        listed = ", ".join(f"{k} ({v})" for k, v in unmapped.items())
        err.print(f"valuescope: value names not in --value-map (ignored): {listed}", markup=False)
    if dropped:
        err.print(f"valuescope: {dropped} {units} dropped: no mapped value", markup=False)
    return converted


def _audit_several(names: list[str], kinds: list[str], out_dir: Path, seed: int, one: Any) -> None:
    """Each instrument into its own folder, then their agreement and one card with all."""
    import json

    from .agreement import agreement
    from .card import write_card
    from .report import read_results

    labels: list[str] = []
    for name in names:
        label = Path(name).stem
        while label in labels:
            label += "+"
        labels.append(label)
    docs = {}
    for name, kind, label in zip(names, kinds, labels, strict=True):
        out.rule(f"{label} ({kind})")
        one(name, kind, out_dir / label)
        docs[label] = read_results(out_dir / label)
    report = agreement(docs, seed)
    path = out_dir / "agreement.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    table = Table(title="Agreement between instruments (Spearman's rho of the profiles)")
    for column in ("instrument", "instrument", "rho", "95% CI", "values"):
        table.add_column(column)
    for pair in report["pairs"]:
        rho, (low, high) = pair["rho"], pair["ci"]
        table.add_row(
            pair["a"],
            pair["b"],
            "n/a" if rho is None else f"{rho:+.2f}",
            "n/a" if low is None else f"{low:+.2f} to {high:+.2f}",
            str(pair["n_values"]),
        )
    out.rule("convergent validity")
    out.print(table)
    labelled = [
        {**doc, "label": f"{label} ({doc['instrument']['kind']})"} for label, doc in docs.items()
    ]
    card = write_card(labelled, out_dir / "card.html", "Value profile across instruments")
    out.print(f"agreement: {path}")
    out.print(f"card:      {card}")


def _audit_dilemmas(
    model: str,
    instrument: str,
    method: str,
    system: str | None,
    out_dir: Path,
    seed: int,
    limit: int | None,
    paraphrase: bool,
    options: dict[str, Any],
    converted: Any = None,
    steering: Any = None,
) -> None:
    from .audit import AuditConfig, run_audit
    from .progress import progress_bar
    from .report import write_results

    config = AuditConfig(
        model=model,
        instrument=instrument,
        method=method,
        system=system,
        seed=seed,
        paraphrase=paraphrase,
        limit=limit,
    )
    with progress_bar(err) as hook:
        result = run_audit(
            config,
            out=out_dir,
            progress=hook,
            backend_options=options,
            instrument=converted,
            steering=steering,
        )
    paths = write_results(result, out_dir)
    from .summary import print_summary

    print_summary(out, result)
    if result.steering is not None:
        terms = ", ".join(
            f"{t['value']}@{t['layer']}={t['coef']:+g}" for t in result.steering["terms"]
        )
        out.print(
            f"steering ({result.steering['mode']}): {terms} · fluency cost "
            f"{result.steering['fluency_cost']:+.1%} perplexity on neutral text"
        )
    if result.requests is not None and result.server is not None:
        caps = result.server["capabilities"]
        offered = [name for name, ok in caps.items() if ok is True]
        stats = result.requests
        causes = ", ".join(f"{k} {v}" for k, v in stats["retry_causes"].items())
        out.print(
            f"server: offers {', '.join(offered) or 'plain chat only'}; requests: "
            f"{stats['sent']} sent, {stats['cached']} from the cache, {stats['retries']} "
            f"retries{f' ({causes})' if causes else ''}, {stats['tokens']:,} tokens"
        )
        if caps.get("echo_note"):
            out.print(f"server: echo not used: {caps['echo_note']}")
    out.print(f"results: {paths['results']}")
    out.print(f"items:   {paths['items']}")
    out.print(f"card:    {paths['card']}")


def _audit_likert(
    model: str,
    instrument: str,
    method: str,
    system: str | None,
    out_dir: Path,
    seed: int,
    limit: int | None,
    alpha: bool,
    options: dict[str, Any],
    converted: Any = None,
) -> None:
    """The audit of a Likert questionnaire: ratings, raw and ipsatized profile, diagnostics."""
    from .likert import load_questionnaire, run_likert
    from .persona import load_personas
    from .progress import progress_bar
    from .report import write_likert_results

    questionnaire = converted or load_questionnaire(instrument)
    from .backends import load_run_backend

    backend = load_run_backend(model, out_dir, options)
    panel = load_personas(questionnaire.taxonomy, None) if alpha else None
    with progress_bar(err) as hook:
        result = run_likert(
            model, questionnaire, backend, method, system, seed, limit, panel, out_dir, hook
        )
    paths = write_likert_results(result, out_dir)
    table = Table(
        title=f"{result.model_name} on {questionnaire.name} ({result.method})",
        caption="rating 1-6 (keyed: 6 = holds the value); ipsatized = centred on own mean",
    )
    for column in ("value", "rating", "95% CI", "ipsatized", "95% CI", "alpha"):
        table.add_column(column, justify="left" if column == "value" else "right")
    order = sorted(result.raw, key=lambda v: -result.ipsatized[v].score)
    for value in order:
        raw, ips = result.raw[value], result.ipsatized[value]
        a = result.alpha.get(value) if result.alpha else None
        table.add_row(
            questionnaire.taxonomy[value].label,
            f"{raw.score:.2f}",
            f"{raw.ci[0]:.2f}–{raw.ci[1]:.2f}",
            f"{ips.score:+.2f}",
            f"{ips.ci[0]:+.2f}–{ips.ci[1]:+.2f}",
            "n/a" if a is None else f"{a:.2f}",
        )
    out.print(table)
    out.print(
        f"acquiescence {result.acquiescence:.2f} (mean rating; 3.5 is the middle) · "
        f"scale-direction consistency {result.direction_consistency:.2f}"
    )
    if result.recovery:
        ranks = [r["rank"] for r in result.recovery.values()]
        out.print(
            f"persona recovery (ipsatized): top-1 {sum(r == 1 for r in ranks)}/{len(ranks)} · "
            f"top-3 {sum(r <= 3 for r in ranks)}/{len(ranks)}"
        )
    out.print(f"verdict: {result.verdict}")
    out.print(f"{result.seconds:.1f} s")
    out.print(f"results: {paths['results']}")
    out.print(f"items:   {paths['items']}")
    out.print(f"card:    {paths['card']}")


def _audit_pairwise(
    model: str,
    instrument: str,
    system: str | None,
    out_dir: Path,
    seed: int,
    budget: int | None,
    options: dict[str, Any],
    converted: Any = None,
) -> None:
    """The audit of a pairwise instrument: Thurstonian utilities, value scores, fit checks."""
    from .pairwise import load_outcomes, run_pairwise
    from .progress import progress_bar
    from .report import write_pairwise_results

    outcomes = converted or load_outcomes(instrument)
    from .backends import load_run_backend

    backend = load_run_backend(model, out_dir, options)
    with progress_bar(err) as hook:
        result = run_pairwise(model, outcomes, backend, system, seed, budget, out_dir, hook)
    paths = write_pairwise_results(result, out_dir)
    table = Table(
        title=f"{result.model_name} on {outcomes.name} (pairwise, Thurstonian)",
        caption="score = P(an outcome of the value is preferred to one of another value)",
    )
    for column in ("value", "score", "95% CI", "mean utility", "n"):
        table.add_column(column, justify="left" if column == "value" else "right")
    for value in sorted(result.profile.scores, key=lambda v: -result.profile.scores[v].score):
        score, utility = result.profile.scores[value], result.value_utility[value]
        table.add_row(
            outcomes.taxonomy[value].label,
            f"{score.score:.2f}",
            f"{score.ci[0]:.2f}–{score.ci[1]:.2f}",
            f"{utility.score:+.2f}",
            str(score.n),
        )
    out.print(table)

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    out.print(
        f"{len(result.pairs)} comparisons · held-out accuracy {fmt(result.accuracy)} · "
        f"held-out log-loss {fmt(result.log_loss)} (0.69 = always 1/2) · transitivity "
        f"violations {fmt(result.transitivity)} · decisiveness {result.decisiveness:.3f}"
    )
    out.print(f"verdict: {result.verdict}")
    out.print(f"{result.seconds:.1f} s")
    out.print(f"results: {paths['results']}")
    out.print(f"items:   {paths['items']}")
    out.print(f"card:    {paths['card']}")


@app.command()
def vectors(
    model: ModelOpt = "smollm2",
    taxonomy: Annotated[
        str, typer.Option(help="Taxonomy whose built-in contrastive pairs to use.")
    ] = "schwartz",
    contrast: Annotated[
        str | None,
        typer.Option(help="Contrastive pairs: a YAML file (default: the taxonomy's built-in set)."),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="Direction saved for steering: mean-diff, pca, logistic, or optimized (trained "
            "at each value's best layer to move the model's preference; slower)."
        ),
    ] = "mean-diff",
    train_steps: Annotated[
        int, typer.Option(help="With --method optimized: passes over each value's pairs.")
    ] = 4,
    held_out: Annotated[
        float, typer.Option(help="Share of each value's pairs kept out to score the probes.")
    ] = 0.3,
    seed: SeedOpt = 0,
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="Vector file to write (safetensors).")
    ] = Path("runs/vectors.safetensors"),
) -> None:
    """Extract value vectors per value and layer; report held-out probe accuracy; save them."""
    from .backends import load_white_box
    from .contrast import load_contrast
    from .optimize import Training
    from .progress import progress_bar
    from .vectors import extract_vectors

    training = Training(steps=train_steps)
    pairs = load_contrast(contrast or taxonomy)
    backend = load_white_box(model)
    with progress_bar(err) as hook:
        found = extract_vectors(
            backend, pairs, method, held_out, seed, progress=hook, training=training
        )
    found.save(out_file)
    table = Table(
        title=f"Value vectors of {found.model} ({pairs.name}, {method})",
        caption="held-out accuracy of telling an upholding answer from an opposing one",
    )
    scored = ["logistic", "mean-diff", "pca"] + (["optimized"] if method == "optimized" else [])
    for column in ("value", "best layer", *scored, "pairs fit/held"):
        table.add_column(column, justify="left" if column == "value" else "right")
    for value, vv in found.values.items():
        acc = vv.best.accuracy  # the file was just extracted here: every method is scored
        table.add_row(
            value,
            str(vv.best_layer),
            *(f"{acc[name]:.2f}" for name in scored),
            f"{vv.n_train}/{vv.n_held_out}",
        )
    out.print(table)
    out.print(f"{found.seconds:.1f} s for {len(found.values)} values x {found.num_layers} layers")
    out.print(f"vectors: {out_file}")


@app.command()
def read(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to read.")] = None,
    vectors_file: Annotated[
        Path, typer.Option("--vectors", help="Vector file from `valuescope vectors`.")
    ] = Path("runs/vectors.safetensors"),
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model spec (default: the vectors' own).")
    ] = None,
    from_file: Annotated[
        Path | None, typer.Option("--file", help="Read texts from a file, one per line.")
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option(
            "--run", help="Read the generated answers of a run (audit --method generate)."
        ),
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the probabilities as CSV.")
    ] = None,
) -> None:
    """Score texts by projection on the value vectors: P(the text upholds each value)."""
    import csv

    from .errors import UsageError
    from .progress import progress_bar
    from .vectors import VectorSet, read_texts

    found = VectorSet.load(vectors_file)
    items = list(texts or [])
    if from_file is not None:
        if not from_file.is_file():
            raise UsageError(f"--file {str(from_file)!r}: no such file")
        items += [line for line in from_file.read_text().splitlines() if line.strip()]
    if run is not None:
        if items:
            raise UsageError("--run reads a run's answers; give texts or --file, not both")
        _read_run(found, run, model, out_file)
        return
    if not items:
        raise UsageError("nothing to read: give texts as arguments, --file FILE or --run DIR")
    backend = _reader(found, model)
    with progress_bar(err) as hook:
        probs = read_texts(backend, found, items, progress=hook)
    values = list(found.values)
    table = Table(title=f"P(upholds the value), read from {found.model}'s activations")
    table.add_column("text")
    for value in values:
        table.add_column(value, justify="right")
    for k, text in enumerate(items):
        short = text if len(text) <= 48 else text[:47] + "…"
        table.add_row(short, *(f"{probs[v][k]:.2f}" for v in values))
    out.print(table)
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        with out_file.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", *values])
            for k, text in enumerate(items):
                writer.writerow([text, *(f"{probs[v][k]:.4f}" for v in values)])
        out.print(f"probabilities: {out_file}")


def _reader(found: Any, model: str | None) -> Any:
    """The white-box model `read` reads with: `--model`, else the one the vectors came from."""
    from .backends import load_white_box
    from .vectors import check_model

    backend = load_white_box(model or found.spec)
    check_model(found, backend)
    return backend


def _read_run(found: Any, run: Path, model: str | None, out_file: Path | None) -> None:
    """`read --run DIR`: every generated answer, read as the reply to its own question."""
    import csv

    from .progress import progress_bar
    from .report import load_answers
    from .vectors import read_answers

    records = load_answers(run)
    backend = _reader(found, model)
    with progress_bar(err) as hook:
        reading = read_answers(backend, found, records, progress=hook)
    table = Table(
        title=f"{len(records)} generated answers of {run}, read from {found.model}'s activations",
        caption="P(upholds): mean over all answers; then over answers that chose the option "
        "upholding / opposing the value",
    )
    for column in ("value", "P(upholds)", "chose upholding", "chose opposing", "difference"):
        table.add_column(column, justify="left" if column == "value" else "right")

    def show(x: Any, n: Any = None) -> str:
        return "-" if x is None else f"{x:+.2f}" if n is None else f"{x:.2f} ({n})"

    for value, p in reading.probs.items():
        a = reading.agreement[value]
        table.add_row(
            value,
            f"{sum(p) / len(p):.2f}",
            show(a["upholding_chosen"], a["n_upholding"]),
            show(a["opposing_chosen"], a["n_opposing"]),
            show(a["difference"]),
        )
    out.print(table)
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        values = list(reading.probs)
        with out_file.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["item_id", "wording", "order", "sample", "option", "answer", *values])
            for k, r in enumerate(records):
                order = "-".join(map(str, r.get("order", [])))
                option = "" if r.get("option") is None else r["option"]
                writer.writerow([r.get("item_id"), r.get("wording"), order, r.get("sample"),
                                 option, r["answer"],
                                 *(f"{reading.probs[v][k]:.4f}" for v in values)])  # fmt: skip
        out.print(f"probabilities: {out_file}")


@app.command()
def steer(
    target: Annotated[
        str,
        typer.Option(help="Score changes to reach, e.g. benevolence=+0.25,power=-0.1."),
    ],
    model: ModelOpt = "smollm2",
    vectors_file: Annotated[
        Path, typer.Option("--vectors", help="Vector file from `valuescope vectors`.")
    ] = Path("runs/vectors.safetensors"),
    instrument: InstrumentOpt = "schwartz-dilemmas",
    contrast: Annotated[
        str | None,
        typer.Option(
            help="Calibration pairs (default: the built-in set of the vectors' taxonomy)."
        ),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="add (coef x vector everywhere) or gated (only where needed).")
    ] = "add",
    fluency_budget: Annotated[
        float, typer.Option(help="Largest relative perplexity increase allowed on neutral text.")
    ] = 0.10,
    method: MethodOpt = "auto",
    out_dir: OutOpt = Path("runs/steer"),
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
) -> None:
    """Steer toward a target profile: calibrate on valuescope's own pairs, then audit the
    steered and the unsteered model on --instrument and report the measured shift."""
    import json

    from .backends import load_white_box
    from .calibration import parse_target, steer_to_target
    from .card import write_card
    from .contrast import load_contrast
    from .errors import UsageError
    from .progress import progress_bar
    from .report import results_json, write_results
    from .steering import check_mode
    from .tradeoff import MAX_BUDGET, reach_note
    from .vectors import VectorSet

    wanted = parse_target(target)
    steer_mode = check_mode(mode, "--mode")
    if not 0 < fluency_budget < MAX_BUDGET:
        raise UsageError(f"--fluency-budget {fluency_budget}: give a share, e.g. 0.10 for 10%")
    found = VectorSet.load(vectors_file)
    for value in wanted:
        found[value]
    pairs = load_contrast(contrast or found.taxonomy)
    backend = load_white_box(model)
    with progress_bar(err) as hook:
        run = steer_to_target(
            backend, found, pairs, wanted, instrument, out_dir, str(vectors_file), method,
            steer_mode, fluency_budget, seed, limit, hook,
        )  # fmt: skip
    write_results(run.plain, out_dir / "unsteered")
    paths = write_results(run.steered, out_dir)
    docs = [results_json(run.plain), results_json(run.steered)]
    docs[0]["label"], docs[1]["label"] = "unsteered", "steered"
    write_card(docs, paths["card"], f"Steering {found.model} toward {target}")
    table = Table(title=f"Steering on {run.plain.instrument.name} ({run.plain.method})")
    columns = ("value", "layer", "coef", "target", "expected", "measured", "95% CI", "flipped")
    for column in columns:
        table.add_column(column, justify="left" if column == "value" else "right")
    comp = run.composition
    steering = docs[1]["steering"]  # as results.json has it: JSON has no NaN, so n/a is None
    shifts = steering["measured_shift"]
    for value in wanted:
        shift = shifts.get(value, {"shift": float("nan"), "ci": [None, None], "n": 0})
        low, high = shift["ci"]
        flipped = (
            f"+{shift['flipped_toward']} / -{shift['flipped_away']} of {shift['n']}"
            if shift["n"]
            else "n/a"
        )
        table.add_row(
            value,
            str(comp.layers[value]),
            f"{comp.coefs[value]:+.2f}",
            f"{wanted[value]:+.2f}",
            f"{comp.expected[value]:+.2f}",
            f"{shift['shift']:+.3f}",
            "n/a" if low is None else f"{low:+.3f} to {high:+.3f}",
            flipped,
        )
    out.print(table)
    out.print(f"fluency cost {comp.fluency_cost:+.1%} perplexity (budget {fluency_budget:.0%})")
    for conflict in comp.conflicts:
        out.print(f"conflict: {conflict}", markup=False)
    for value, change in wanted.items():
        if value in shifts:
            note = reach_note(
                value,
                change,
                shifts[value],
                comp.fluency_cost,
                fluency_budget,
                run.plain.instrument.name,
            )
            if note:
                out.print(f"not reached: {note}", markup=False)
    (out_dir / "steering.json").write_text(json.dumps(steering, indent=1) + "\n")
    out.print(f"results: {paths['results']} (unsteered: {out_dir / 'unsteered' / 'results.json'})")
    out.print(f"card:    {paths['card']}")


@app.command("vectors-export")
def vectors_export(
    steer_spec: Annotated[
        str,
        typer.Argument(
            help="FILE:value=coef[,value@layer=coef...]: vectors and coefficients to export."
        ),
    ],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="GGUF file to write.")] = Path(
        "runs/control-vector.gguf"
    ),
    model_hint: Annotated[str, typer.Option(help="Model type llama.cpp checks.")] = "llama",
) -> None:
    """Export vectors (coefficients applied) as a llama.cpp control-vector GGUF."""
    from .controlvector import export_gguf
    from .steering import parse_steer

    steering = parse_steer(steer_spec)
    export_gguf(steering, out_file, model_hint)
    terms = ", ".join(f"{t.value}@{t.layer}={t.coef:+g}" for t in steering.terms)
    out.print(f"control vector ({terms}): {out_file}")
    out.print(f"run it with: llama-cli -m MODEL.gguf --control-vector {out_file}")


@app.command("vectors-import")
def vectors_import(
    source: Annotated[
        Path,
        typer.Argument(
            help="A control-vector .gguf (repeng, llama.cpp) or .safetensors of "
            "{layer: vector} (steering-vectors)."
        ),
    ],
    value: Annotated[str, typer.Option(help="The value the vector stands for.")],
    model: ModelOpt = "smollm2",
    taxonomy: Annotated[str, typer.Option(help="Taxonomy of the value.")] = "schwartz",
    contrast: Annotated[
        str | None, typer.Option(help="Pairs to measure it on (default: built-in set).")
    ] = None,
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="valuescope vector file to write.")
    ] = Path("runs/imported.safetensors"),
) -> None:
    """Import another tool's vector: measured on valuescope's pairs, saved in its format."""
    from .backends import load_white_box
    from .contrast import load_contrast
    from .controlvector import import_directions, load_directions

    directions = load_directions(source)
    pairs = load_contrast(contrast or taxonomy)
    backend = load_white_box(model)
    found = import_directions(directions, value, backend, pairs, str(source))
    found.save(out_file)
    vv = found[value]
    out.print(
        f"{value}: {len(vv.layers)} layer(s); best layer {vv.best_layer}, accuracy on "
        f"{vv.n_held_out} pairs {vv.best.probe_accuracy:.2f}"
    )
    out.print(f"vectors: {out_file}")


@app.command()
def validate(
    model: ModelOpt = "smollm2",
    instrument: InstrumentOpt = "schwartz-dilemmas",
    method: MethodOpt = "auto",
    personas: Annotated[
        str | None, typer.Option(help="YAML of persona prompts (default: the built-in ones).")
    ] = None,
    out_dir: OutOpt = Path("runs/validate"),
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    budget: Annotated[
        int | None,
        typer.Option(help="Pairwise instruments: comparisons per run (default 4 per outcome)."),
    ] = None,
    api_key_env: ApiKeyEnvOpt = None,
    concurrency: ConcurrencyOpt = None,
    timeout: TimeoutOpt = None,
    max_retries: MaxRetriesOpt = None,
    max_rps: MaxRpsOpt = None,
    token_budget: TokenBudgetOpt = None,
    tokenizer: TokenizerOpt = None,
) -> None:
    """Persona recovery: audit once per value persona and check the value moves most."""
    import json

    from .progress import progress_bar
    from .validate import run_validation

    options = _server_options(
        model, api_key_env, concurrency, timeout, max_retries, max_rps, token_budget, tokenizer
    )
    with progress_bar(err) as hook:
        recovery = run_validation(
            model,
            instrument,
            method,
            limit,
            seed,
            personas,
            out=out_dir,
            progress=hook,
            backend_options=options,
            budget=budget,
        )
    table = Table(title=f"Persona recovery ({recovery.method})")
    for column in ("persona value", "own delta", "rank of own value"):
        table.add_column(column)
    for value in recovery.deltas:
        table.add_row(
            value, f"{recovery.deltas[value][value]:+.3f}", str(recovery.rank_of_own(value))
        )
    out.print(table)
    out.print(
        f"top-1 {recovery.top_k(1):.0%} · top-3 {recovery.top_k(3):.0%} · "
        f"mean own delta {recovery.mean_own_delta:+.3f}"
    )
    path = out_dir / "validation.json"
    path.write_text(json.dumps(recovery.as_dict(), indent=1) + "\n")
    out.print(f"validation: {path}")


@app.command()
def compare(
    runs: Annotated[
        list[Path], typer.Argument(help="Audit --out folders (or results.json files).")
    ],
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the comparison card.")
    ] = Path("runs/compare.html"),
    title: Annotated[str | None, typer.Option(help="Card title.")] = None,
) -> None:
    """Draw several runs side by side in one card (models, system prompts, personas)."""
    from .card import write_card
    from .errors import UsageError
    from .report import read_results

    docs = [read_results(run) for run in runs]
    taxonomies = {doc["taxonomy"] for doc in docs}
    if len(taxonomies) > 1:
        raise UsageError(
            f"runs use different taxonomies ({', '.join(sorted(taxonomies))}); compare runs of one"
        )
    out.print(f"card: {write_card(docs, out_file, title)}")


@app.command()
def instruments() -> None:
    """List the built-in instruments and taxonomies."""
    from .instrument import BUILTIN_INSTRUMENTS, instrument_kind, load_instrument
    from .likert import load_questionnaire
    from .pairwise import load_outcomes
    from .taxonomy import BUILTIN_TAXONOMIES, load_taxonomy

    table = Table(title="Built-in instruments")
    for column in ("name", "kind", "taxonomy", "items", "paraphrases"):
        table.add_column(column, no_wrap=column == "name")
    for name in BUILTIN_INSTRUMENTS:
        kind = instrument_kind(name)
        if kind == "likert":
            questionnaire = load_questionnaire(name)
            row = ("likert", questionnaire.taxonomy.name, len(questionnaire.items), "no")
        elif kind == "pairwise":
            outcome_set = load_outcomes(name)
            row = ("pairwise", outcome_set.taxonomy.name, len(outcome_set.items), "no")
        else:
            inst = load_instrument(name)
            paraphrased = "yes" if inst.has_paraphrases else "no"
            row = (inst.kind, inst.taxonomy.name, len(inst.items), paraphrased)
        table.add_row(name, row[0], row[1], str(row[2]), row[3])
    out.print(table)
    tax_table = Table(title="Built-in taxonomies")
    tax_table.add_column("name", no_wrap=True)
    tax_table.add_column("values")
    for name in BUILTIN_TAXONOMIES:
        tax_table.add_row(name, ", ".join(load_taxonomy(name).ids))
    out.print(tax_table)


def main() -> None:
    """Entry point: user errors become one line on stderr and an exit code, not a traceback."""
    try:
        app()
    except ValuescopeError as exc:
        err.print(f"valuescope: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("valuescope: interrupted; rerun the same command to resume", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
