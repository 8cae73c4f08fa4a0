"""The `valuescope` command line: thin wrappers over the public API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from . import __version__
from .cli_options import (
    ApiKeyEnvOpt,
    ConcurrencyOpt,
    InstrumentOpt,
    LimitOpt,
    MaxRetriesOpt,
    MaxRpsOpt,
    MethodOpt,
    ModelOpt,
    OutOpt,
    SeedOpt,
    TimeoutOpt,
    TokenBudgetOpt,
    TokenizerOpt,
    err,
    out,
    server_options,
)
from .cli_vectors import read, steer, vectors, vectors_export, vectors_import
from .errors import ValuescopeError

app = typer.Typer(
    name="valuescope",
    help="Measure, explain and steer the human values of language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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
        str | None,
        typer.Option(
            help="With --steer: add (coef x vector everywhere, the default) or gated (only "
            "where needed)."
        ),
    ] = None,
) -> None:
    """Audit a model: value profile with 95% CIs, diagnostics, results.json, items.csv, card."""
    from .instrument import instrument_kind

    options = server_options(
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
    if steer_mode is not None and steer is None:
        raise UsageError("--steer-mode applies with --steer FILE:value=coef")
    if steer is not None:
        from .steering import check_mode, parse_steer

        if set(kinds) != {"dilemma"}:
            raise UsageError("--steer applies to dilemma instruments in this version")
        steering = parse_steer(steer, check_mode(steer_mode or "add", "--steer-mode"))

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


# The white-box commands live in cli_vectors; registered here to keep the order of --help.
app.command()(vectors)
app.command()(read)
app.command()(steer)
app.command("vectors-export")(vectors_export)
app.command("vectors-import")(vectors_import)


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

    options = server_options(
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
