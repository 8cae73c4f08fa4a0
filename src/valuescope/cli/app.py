"""The `valuescope` command line: thin wrappers over the public API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from valuescope import __version__
from valuescope.cli.detect import detect
from valuescope.cli.options import (
    InstrumentOpt,
    LimitOpt,
    MethodOpt,
    ModelOpt,
    OutOpt,
    SeedOpt,
    TaxonomyOpt,
    check_out_dir,
    check_out_file,
    err,
    out,
    with_server_flags,
)
from valuescope.cli.rewards import rewards
from valuescope.cli.vectors import read, steer, vectors, vectors_export, vectors_import
from valuescope.errors import UsageError, ValuescopeError

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
@with_server_flags
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
        bool | None,
        typer.Option(
            help="Also score the second wording (paraphrase consistency); default: where the "
            "items have one."
        ),
    ] = None,
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
    taxonomy: TaxonomyOpt = None,
    samples: Annotated[
        int | None,
        typer.Option(
            help="Open (free-text) instruments: answers per prompt, sampled at temperature 0.7 "
            "(default 2)."
        ),
    ] = None,
    detector: Annotated[
        str | None,
        typer.Option(
            help="Open instruments: the detector that reads the answers, then any it is compared "
            "with, e.g. embed,lexicon (default: embed, plus lexicon on Schwartz); also judge:"
            "<model spec> and probe:<model spec>. See docs/detect.md."
        ),
    ] = None,
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
    align: Annotated[
        str | None,
        typer.Option(
            help="Decode under a value reward: value=weight[,value=weight] (a negative weight "
            "asks for less), or user:MODEL.json:USER (a fitted user's reward); see "
            "docs/alignment.md. Only generated answers change."
        ),
    ] = None,
    strategy: Annotated[
        str,
        typer.Option(help="With --align: best-of-n, resample, guided (local models) or sentence."),
    ] = "best-of-n",
    n_samples: Annotated[
        int | None,
        typer.Option(
            "-n",
            help="With --align: samples per answer (best-of-n, resample), tries per "
            "sentence (sentence); default 8.",
        ),
    ] = None,
    reward: Annotated[
        str | None,
        typer.Option(
            help="With --align: the detector the reward reads with (default lexicon, or embed "
            "when the lexicon measures); never the run's measuring --detector."
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="An earlier run's --out folder of the same instrument: compare this run with "
            "it item by item and write comparison.json (pin --method so both use one)."
        ),
    ] = None,
    fail_on: Annotated[
        float | None,
        typer.Option(
            help="With --baseline: exit with code 4 when any value moved by at least this much, "
            "beyond noise (Holm-corrected across values), e.g. 0.05 in a CI job."
        ),
    ] = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Audit a model: value profile with 95% CIs, diagnostics, results.json, items.csv, card."""
    from valuescope.audit.kinds import RunSpec

    names = instrument or ["schwartz-dilemmas"]
    loaded = _load_instruments(names, value_map, columns, taxonomy)
    if steer_mode is not None and steer is None:
        raise UsageError("--steer-mode applies with --steer FILE:value=coef")
    interventions: tuple[Any, ...] = ()
    if steer is not None:
        from valuescope.steering.operators import check_mode, parse_steer

        interventions = (parse_steer(steer, check_mode(steer_mode or "add", "--steer-mode")),)
    interventions += _alignment(align, strategy, n_samples, reward, detector, loaded)
    spec = RunSpec(model=model, method=method, system=system, seed=seed, limit=limit,
                   budget=budget, paraphrase=paraphrase, interventions=interventions,
                   samples=samples, detector=detector)  # fmt: skip
    specs = _specs_for(loaded, spec, alpha)
    against = _check_baseline(baseline, fail_on, loaded, specs)
    check_out_dir(out_dir)
    if len(loaded) == 1:
        _audit_one(loaded[0], specs[0], out_dir, options or {})
        if against is not None:
            _compare_with_baseline(against, out_dir, fail_on)
        return
    _audit_several(names, loaded, specs, out_dir, seed, options or {})


def _alignment(
    align: str | None,
    strategy: str,
    n: int | None,
    reward: str | None,
    detector: str | None,
    loaded: list[Any],
) -> tuple[Any, ...]:
    """The --align intervention (none without it), refused before any model loads when its
    reward is the run's measuring detector."""
    if align is None:
        if reward is not None or n is not None or strategy != "best-of-n":
            raise UsageError("--strategy, -n and --reward apply with --align value=weight")
        return ()
    from valuescope.detectors.registry import DEFAULT_DETECTOR
    from valuescope.steering.alignment import parse_align

    measuring = (detector.split(",")[0].strip() if detector else None) or DEFAULT_DETECTOR
    taxonomy = loaded[0].taxonomy.name
    return (parse_align(align, strategy, n, reward, measuring, taxonomy),)


def _check_baseline(
    baseline: Path | None, fail_on: float | None, loaded: list[Any], specs: list[Any]
) -> dict[str, Any] | None:
    """The baseline run's results, checked against this run before any model loads."""
    if baseline is None:
        if fail_on is not None:
            raise UsageError("--fail-on applies with --baseline RUN_DIR")
        return None
    from valuescope.audit.results import read_results

    if fail_on is not None and not fail_on > 0:
        raise UsageError(f"--fail-on {fail_on}: give a positive score change, e.g. 0.05")
    if len(loaded) != 1:
        raise UsageError("--baseline compares one instrument's runs; give one --instrument")
    doc = read_results(baseline)
    found, wanted = doc["instrument"], loaded[0]
    if found.get("sha256") != wanted.sha256:
        raise UsageError(
            f"--baseline {str(baseline)!r} ran {found.get('name')} in another version (or "
            f"another instrument) than {wanted.name}; a comparison needs the same items"
        )
    if specs[0].method != "auto" and specs[0].method != doc.get("method"):
        raise UsageError(
            f"--baseline {str(baseline)!r} used --method {doc.get('method')}; use the same"
        )
    return doc


def _compare_with_baseline(baseline: dict[str, Any], out_dir: Path, fail_on: float | None) -> None:
    """comparison.json and the paired summary of this run against the baseline; exit code 4
    under --fail-on when a value moved by at least the threshold."""
    import json

    from valuescope.audit.card import write_card
    from valuescope.audit.comparison import ValuesMoved, compare_runs, why_not_paired
    from valuescope.audit.results import json_safe, read_results

    doc = read_results(out_dir)
    reason = why_not_paired(baseline, doc)
    if reason is not None:
        raise UsageError(f"this run and --baseline do not pair: {reason}")
    found = compare_runs(baseline, doc)
    paired = json_safe(found.as_dict())
    path = out_dir / "comparison.json"
    path.write_text(json.dumps(paired, indent=1) + "\n")
    write_card([doc], out_dir / "card.html", None, paired)
    print_comparison(found)
    out.print(Text(f"comparison: {path}"))
    if fail_on is not None:
        failing = found.failing(fail_on)
        if failing:
            moved = ", ".join(f"{v} {found.values[v].diff:+.3f}" for v in failing)
            raise ValuesMoved(
                f"values moved by at least {fail_on:g} against the baseline: {moved} "
                f"(Holm-corrected, paired; {path})"
            )


def _load_instruments(
    names: list[str], value_map: Path | None, columns: str | None, taxonomy: str | None
) -> list[Any]:
    """Every instrument named, loaded and checked before any model loads; converted sources
    report the names their mapping does not cover and the rows they dropped."""
    from valuescope.audit.kinds import get_kind, load_instrument
    from valuescope.instruments.tables import split_source

    sources = {name: source for name in names if (source := split_source(name))}
    if value_map is not None and not sources:
        raise UsageError(
            "--value-map applies to dailydilemmas:, utility-options: and table: instruments"
        )
    if columns is not None and not any(s[0] in ("table", "open") for s in sources.values()):
        raise UsageError("--columns applies to table: and open: <file or hf:dataset> instruments")
    loaded = []
    for name in names:
        if name in sources:
            prefix, location = sources[name]
            loaded.append(_convert(prefix, location, value_map, columns, taxonomy or "schwartz"))
        else:
            loaded.append(load_instrument(name, taxonomy))
    for inst in loaded:
        for warning in get_kind(inst.kind).warnings(inst):
            err.print(Text(f"valuescope: warning: {warning}"))
    found = {inst.taxonomy.name for inst in loaded}
    if len(found) > 1:
        raise UsageError(
            f"the instruments use different taxonomies ({', '.join(sorted(found))}); their "
            "agreement needs one: audit them separately"
        )
    return loaded


def _specs_for(loaded: list[Any], spec: Any, alpha: bool) -> list[Any]:
    """Each instrument's spec, checked against its kind before any model loads.

    One instrument refuses every setting its kind does not honour. Several take each setting
    where their kind honours it, say where it does not apply, and refuse a setting none of
    them honours.
    """
    from valuescope.audit.kinds import FLAGS, check_spec, get_kind
    from valuescope.instruments.personas import load_personas

    def with_panel(inst: Any, base: Any) -> Any:
        return base.replace(panel=load_personas(inst.taxonomy, None)) if alpha else base

    if len(loaded) == 1:
        one = with_panel(loaded[0], spec)
        check_spec(loaded[0], one)
        return [one]
    kinds = [get_kind(inst.kind) for inst in loaded]
    asked = spec.given() + (["panel"] if alpha else [])

    def applies(setting: str, kind: Any) -> bool:
        if setting == "method":  # every kind honours --method, each with its own methods
            return spec.method in kind.methods
        return setting in kind.honours

    for setting in asked:
        skipped = [inst.name for inst, kind in zip(loaded, kinds, strict=True)
                   if not applies(setting, kind)]  # fmt: skip
        if len(skipped) == len(loaded):
            check_spec(loaded[0], with_panel(loaded[0], spec))  # the refusal, with its hint
        if skipped:
            shown = f"{FLAGS[setting]} {spec.method}" if setting == "method" else FLAGS[setting]
            err.print(
                f"valuescope: {shown} does not apply to {', '.join(skipped)} (they run with "
                "their defaults; kept for the others)",
                markup=False,
            )
    specs = []
    for inst, kind in zip(loaded, kinds, strict=True):
        defaults = spec.__class__()
        kept = spec.replace(**{s: getattr(defaults, s) for s in spec.given()
                               if s not in kind.honours})  # fmt: skip
        kept = with_panel(inst, kept) if "panel" in kind.honours else kept
        if kept.method not in ("auto", *kind.methods):
            kept = kept.replace(method="auto")
        check_spec(inst, kept)
        specs.append(kept)
    return specs


def _audit_one(instrument: Any, spec: Any, out_dir: Path, options: dict[str, Any]) -> None:
    """Run one instrument, write its files and print its summary."""
    from valuescope.audit.results import write_results
    from valuescope.audit.run import run_audit
    from valuescope.audit.summary import print_paths, print_summary
    from valuescope.progress import progress_bar

    with progress_bar(err) as hook:
        result = run_audit(instrument, spec, out=out_dir, progress=hook, backend_options=options)
    paths = write_results(result, out_dir)
    print_summary(out, result)
    print_paths(out, paths)


def _convert(
    prefix: str, location: str, value_map: Path | None, columns: str | None, taxonomy: str
) -> Any:
    """A DailyDilemmas, Utility Engineering or generic table source as an instrument; names
    the mapping does not cover and items dropped for want of a value are reported."""
    from valuescope.instruments.tables import (
        load_daily_dilemmas,
        load_table,
        load_utility_options,
        parse_columns,
    )

    converted: Any
    if prefix == "dailydilemmas":
        converted, unmapped, dropped = load_daily_dilemmas(location, value_map, taxonomy)
        units = "dilemmas"
    elif prefix == "utility-options":
        converted, unmapped, dropped = load_utility_options(location, value_map, taxonomy)
        units = "options"
    else:
        kind = "open" if prefix == "open" else None
        converted, unmapped, dropped = load_table(
            location, parse_columns(columns, kind), value_map, taxonomy
        )
        units = "rows"
    if unmapped:
        listed = ", ".join(f"{k} ({v})" for k, v in unmapped.items())
        err.print(f"valuescope: value names not in --value-map (ignored): {listed}", markup=False)
    if dropped:
        err.print(f"valuescope: {dropped} {units} dropped: no mapped value", markup=False)
    return converted


def _audit_several(
    names: list[str],
    loaded: list[Any],
    specs: list[Any],
    out_dir: Path,
    seed: int,
    options: dict[str, Any],
) -> None:
    """Each instrument into its own folder, then their agreement and one card with all."""
    import json

    from valuescope.audit.agreement import agreement
    from valuescope.audit.card import write_card
    from valuescope.audit.results import read_results

    labels: list[str] = []
    for name in names:
        label = Path(name).stem
        while label in labels:
            label += "+"
        labels.append(label)
    docs = {}
    for inst, spec, label in zip(loaded, specs, labels, strict=True):
        out.rule(Text(f"{label} ({inst.kind})"))
        _audit_one(inst, spec, out_dir / label, options)
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
            Text(pair["a"]),
            Text(pair["b"]),
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
    out.print(Text(f"agreement: {path}"))
    out.print(Text(f"card:      {card}"))


# The white-box commands live in cli_vectors; registered here to keep the order of --help.
app.command()(vectors)
app.command()(read)
app.command()(steer)
app.command("vectors-export")(vectors_export)
app.command("vectors-import")(vectors_import)
app.add_typer(rewards, name="rewards")
app.command()(detect)


@app.command()
@with_server_flags
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
    taxonomy: TaxonomyOpt = None,
    samples: Annotated[
        int | None, typer.Option(help="Open instruments: answers per prompt (default 2).")
    ] = None,
    detector: Annotated[
        str | None,
        typer.Option(help="Open instruments: the detector(s) reading the answers (see audit)."),
    ] = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Persona recovery: audit once per value persona and check the value moves most."""
    import json

    from valuescope.audit.kinds import RunSpec, check_spec, load_instrument
    from valuescope.audit.recovery import run_validation
    from valuescope.progress import progress_bar

    spec = RunSpec(model=model, method=method, seed=seed, limit=limit, budget=budget,
                   samples=samples, detector=detector)  # fmt: skip
    loaded = load_instrument(instrument, taxonomy)
    check_spec(loaded, spec)
    check_out_dir(out_dir)
    with progress_bar(err) as hook:
        recovery = run_validation(
            loaded, spec, personas, out=out_dir, progress=hook, backend_options=options
        )
    table = Table(title=f"Persona recovery ({recovery.method})")
    for column in ("persona value", "own delta", "rank of own value"):
        table.add_column(column)
    for value in recovery.deltas:
        table.add_row(
            Text(value), f"{recovery.deltas[value][value]:+.3f}", str(recovery.rank_of_own(value))
        )
    out.print(table)
    out.print(
        f"top-1 {recovery.top_k(1):.0%} · top-3 {recovery.top_k(3):.0%} · "
        f"mean own delta {recovery.mean_own_delta:+.3f}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)  # a kind that keeps no progress made none
    path = out_dir / "validation.json"
    path.write_text(json.dumps(recovery.as_dict(), indent=1) + "\n")
    out.print(Text(f"validation: {path}"))


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
    """Draw several runs side by side in one card (models, system prompts, personas); two
    runs of one instrument and method are also compared item by item (comparison.json)."""
    import json

    from valuescope.audit.card import run_label, write_card
    from valuescope.audit.results import json_safe, read_results

    check_out_file(out_file, "compare.html")
    docs = [read_results(run) for run in runs]
    taxonomies = {doc["taxonomy"] for doc in docs}
    if len(taxonomies) > 1:
        raise UsageError(
            f"runs use different taxonomies ({', '.join(sorted(taxonomies))}); compare runs of one"
        )
    labels = [run_label(doc, str(run)) for doc, run in zip(docs, runs, strict=True)]
    for doc, run, label in zip(docs, runs, labels, strict=True):
        if labels.count(label) > 1:  # runs of one model: name them by folder and instrument
            folder = run.name if run.is_dir() else run.parent.name
            doc["label"] = f"{label} · {folder} · {doc['instrument']['name']}"
    paired = None
    if len(docs) == 2:
        from valuescope.audit.comparison import compare_runs, why_not_paired

        reason = why_not_paired(docs[0], docs[1])
        if reason is None:
            found = compare_runs(docs[0], docs[1])
            paired = json_safe(found.as_dict())
            path = out_file.with_name("comparison.json")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(paired, indent=1) + "\n")
            print_comparison(found)
            out.print(Text(f"comparison: {path}"))
        else:
            out.print(Text(f"not compared item by item: {reason}"))
    out.print(Text(f"card: {write_card(docs, out_file, title, paired)}"))


def print_comparison(found: Any) -> None:
    """The paired differences per value, and the finding in plain words."""
    table = Table(title="Paired comparison: B minus A (items both runs scored)")
    for column in ("value", "B − A", "95% CI", "p (Holm)", "items", "moved"):
        table.add_column(column, justify="left" if column == "value" else "right")
    for value, c in found.values.items():
        ci = "n/a" if c.ci[0] != c.ci[0] else f"{c.ci[0]:+.3f} to {c.ci[1]:+.3f}"
        table.add_row(Text(found.labels.get(value, value)), f"{c.diff:+.3f}", ci,
                      f"{c.p_holm:.3f}", str(c.n), "yes" if c.moved else "no")  # fmt: skip
    out.print(table)
    out.print(Text(found.summary()))


@app.command()
def instruments() -> None:
    """List the built-in instruments and taxonomies."""
    from valuescope.audit.kinds import load_instrument
    from valuescope.instruments.document import BUILTIN_INSTRUMENTS
    from valuescope.instruments.taxonomy import BUILTIN_TAXONOMIES, load_taxonomy

    table = Table(title="Built-in instruments")
    for column in ("name", "kind", "taxonomy", "items", "paraphrases"):
        table.add_column(column, no_wrap=column in ("name", "kind", "taxonomy"))
    for name in BUILTIN_INSTRUMENTS:
        inst = load_instrument(name)
        paraphrased = "yes" if getattr(inst, "has_paraphrases", False) else "no"
        table.add_row(name, inst.kind, inst.taxonomy.name, str(len(inst.items)), paraphrased)
    out.print(table)
    tax_table = Table(title="Built-in taxonomies")
    tax_table.add_column("name", no_wrap=True)
    tax_table.add_column("values")
    for name in BUILTIN_TAXONOMIES:
        tax_table.add_row(name, ", ".join(load_taxonomy(name).ids))
    out.print(tax_table)


def main() -> None:
    """Entry point: user errors become one line on stderr and an exit code, not a traceback."""
    for stream in (sys.stdout, sys.stderr):  # a terminal that cannot show a character shows ?
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")
    try:
        app()
    except ValuescopeError as exc:
        # one line, whatever the message holds (a library's multi-line text, say)
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        err.print(f"valuescope: error: {message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("valuescope: interrupted; rerun the same command to resume", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
