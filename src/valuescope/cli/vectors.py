"""The white-box commands: extract value vectors, read text with them, steer toward a target,
and move vectors to and from other tools (registered on the app in `cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from valuescope.cli.options import (
    LocalModelOpt,
    MethodOpt,
    OutOpt,
    SeedOpt,
    check_out_file,
    err,
    out,
)


def vectors(
    model: LocalModelOpt = "smollm2",
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
    values: Annotated[
        str | None,
        typer.Option(
            help="Only these values, comma-separated (e.g. benevolence,power); each value's "
            "vectors come from its own pairs alone. Default: every value with pairs."
        ),
    ] = None,
    seed: SeedOpt = 0,
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="Vector file to write (safetensors).")
    ] = Path("runs/vectors.safetensors"),
) -> None:
    """Extract value vectors per value and layer; report held-out probe accuracy; save them."""
    from valuescope.backends import load_white_box
    from valuescope.errors import UsageError
    from valuescope.progress import progress_bar
    from valuescope.vectors.aggregators import AGGREGATORS
    from valuescope.vectors.contrast import load_contrast
    from valuescope.vectors.extract import METHODS, check_extraction, extract_vectors
    from valuescope.vectors.optimize import Training

    check_out_file(out_file, "vectors.safetensors")
    training = Training(steps=train_steps)
    pairs = load_contrast(contrast or taxonomy)
    if values is not None:
        named = [v.strip() for v in values.split(",") if v.strip()]
        if not named:
            raise UsageError(f"--values {values!r}: name at least one value, e.g. benevolence")
        try:
            pairs = pairs.only(named)
        except UsageError as error:
            raise UsageError(f"--values {values!r}: {error}") from None
    check_extraction(pairs, method, held_out, seed)
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
    trained = [method] if METHODS[method].trainer is not None else []
    scored = [*sorted(AGGREGATORS), *trained]
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
    n = len(found.values)
    out.print(f"{found.seconds:.1f} s for {n} value{'s' * (n != 1)} x {found.num_layers} layers")
    out.print(f"vectors: {out_file}")


def read(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to read.")] = None,
    vectors_file: Annotated[
        Path, typer.Option("--vectors", help="Vector file from `valuescope vectors`.")
    ] = Path("runs/vectors.safetensors"),
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Local model spec: smollm2, hf:<dir>, gguf:<file> (default: the one the "
            "vectors were made with).",
        ),
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

    from valuescope.errors import UsageError
    from valuescope.progress import progress_bar
    from valuescope.vectors.extract import VectorSet, read_texts

    found = VectorSet.load(vectors_file)
    if out_file is not None:
        check_out_file(out_file, "read.csv")
    items = list(texts or [])
    if from_file is not None:
        if not from_file.is_file():
            what = "is a folder" if from_file.is_dir() else "no such file"
            raise UsageError(f"--file {str(from_file)!r}: {what}; give a text file, one per line")
        try:
            lines = from_file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"--file {str(from_file)!r}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
        items += [line for line in lines if line.strip()]
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
    from valuescope.backends import load_white_box
    from valuescope.vectors.extract import check_model

    backend = load_white_box(model or found.spec)
    check_model(found, backend)
    return backend


def _read_run(found: Any, run: Path, model: str | None, out_file: Path | None) -> None:
    """`read --run DIR`: every generated answer, read as the reply to its own question."""
    import csv

    from valuescope.audit.results import load_answers
    from valuescope.progress import progress_bar
    from valuescope.vectors.extract import read_answers

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


def steer(
    target: Annotated[
        str,
        typer.Option(help="Score changes to reach, e.g. benevolence=+0.25,power=-0.1."),
    ],
    model: LocalModelOpt = "smollm2",
    vectors_file: Annotated[
        Path, typer.Option("--vectors", help="Vector file from `valuescope vectors`.")
    ] = Path("runs/vectors.safetensors"),
    instrument: Annotated[
        str | None,
        typer.Option(
            "--instrument",
            "-i",
            help="Instrument the shift is measured on: built-in name or file (default "
            "schwartz-dilemmas; with --via decoding|both an open one, schwartz-open).",
        ),
    ] = None,
    contrast: Annotated[
        str | None,
        typer.Option(
            help="Calibration pairs (default: the built-in set of the vectors' taxonomy)."
        ),
    ] = None,
    via: Annotated[
        str,
        typer.Option(
            help="activations (steering vectors), decoding (a reward-guided strategy) or both "
            "(activations, then decoding on top); see docs/alignment.md."
        ),
    ] = "activations",
    strategy: Annotated[
        str,
        typer.Option(help="With --via decoding|both: best-of-n, resample, guided or sentence."),
    ] = "best-of-n",
    reward: Annotated[
        str | None,
        typer.Option(
            help="With --via decoding|both: the detector the reward reads with (default "
            "lexicon, or embed when the lexicon measures); never the measuring --detector."
        ),
    ] = None,
    detector: Annotated[
        str | None,
        typer.Option(
            help="With --via decoding|both: the detector that measures the answers (default "
            "embed, plus lexicon for agreement)."
        ),
    ] = None,
    max_strength: Annotated[
        float | None,
        typer.Option(
            help="With --via decoding|both: the largest N (best-of-n, sentence), w (guided) or "
            "lambda (resample) the calibration tries (default 16, 16, 64)."
        ),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="add (coef x vector everywhere) or gated (only where needed).")
    ] = "add",
    fluency_budget: Annotated[
        float,
        typer.Option(
            help="Largest relative perplexity increase allowed on neutral text, as a share "
            "above 0 and below 10 (0.10 = 10%)."
        ),
    ] = 0.10,
    method: MethodOpt = "auto",
    out_dir: OutOpt = Path("runs/steer"),
    seed: SeedOpt = 0,
    limit: Annotated[
        int | None,
        typer.Option(
            help="Score only the first N items (with --via decoding|both: N prompts, default 20)."
        ),
    ] = None,
) -> None:
    """Steer toward a target profile: calibrate on valuescope's own pairs (activations) or on
    held-out prompts (decoding) within --fluency-budget, then audit the steered and the
    unsteered model on --instrument and report the measured shift."""
    import json

    from valuescope.audit.card import write_card
    from valuescope.audit.results import results_json, write_results
    from valuescope.backends import load_white_box
    from valuescope.errors import UsageError
    from valuescope.progress import progress_bar
    from valuescope.steering.calibration import parse_target
    from valuescope.steering.loop import OPEN_INSTRUMENT, VIA, check_request, steer_to_target
    from valuescope.steering.operators import check_mode
    from valuescope.steering.tradeoff import MAX_BUDGET, reach_note
    from valuescope.vectors.contrast import load_contrast
    from valuescope.vectors.extract import VectorSet

    wanted = parse_target(target)
    steer_mode = check_mode(mode, "--mode")
    if not 0 < fluency_budget < MAX_BUDGET:
        raise UsageError(
            f"--fluency-budget {fluency_budget}: give a share above 0 and below {MAX_BUDGET:g}, "
            "e.g. 0.10 for 10%"
        )
    if via not in VIA:
        raise UsageError(f"--via {via!r}: choose {', '.join(VIA)}")
    if via != "activations":
        return _steer_by_decoding(wanted, model, vectors_file, instrument or OPEN_INSTRUMENT,
                                  contrast, steer_mode, fluency_budget, via, strategy, reward,
                                  detector, max_strength, out_dir, seed, limit)  # fmt: skip
    instrument = instrument or "schwartz-dilemmas"
    found = VectorSet.load(vectors_file)
    check_request(found, wanted, instrument, method, limit)
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


def _steer_by_decoding(
    wanted: dict[str, float],
    model: str,
    vectors_file: Path,
    instrument: str,
    contrast: str | None,
    mode: Any,
    budget: float,
    via: str,
    strategy: str,
    reward: str | None,
    detector: str | None,
    max_strength: float | None,
    out_dir: Path,
    seed: int,
    limit: int | None,
) -> None:
    """`steer --via decoding|both`: checks first, then calibrate, audit on the open instrument,
    and report per value what was reached, the fluency cost and tokens/s."""
    import json

    from valuescope.audit.card import write_card
    from valuescope.audit.kinds import load_instrument
    from valuescope.audit.results import results_json, write_results
    from valuescope.backends import load_white_box
    from valuescope.errors import UsageError
    from valuescope.progress import progress_bar
    from valuescope.steering.loop import (
        OPEN_LIMIT,
        calibrated_steering,
        check_decoding_request,
        split_budget,
        steer_by_decoding,
    )
    from valuescope.vectors.contrast import load_contrast
    from valuescope.vectors.extract import VectorSet

    limit = limit or OPEN_LIMIT
    check_decoding_request(wanted, instrument, strategy, reward, detector, limit)
    if (out_dir / "progress.jsonl").exists():  # resumed answers would leave the ledger empty
        raise UsageError(f"--out {out_dir}: it holds a run already and --via {via} does not "
                         "resume; give another --out")  # fmt: skip
    found = None
    if via == "both":
        found = VectorSet.load(vectors_file)
        for value in wanted:
            found[value]
        judged = load_instrument(instrument)
        if judged.taxonomy.name != found.taxonomy:
            raise UsageError(
                f"instrument {judged.name!r} is on taxonomy {judged.taxonomy.name!r}, the "
                f"vectors on {found.taxonomy!r}"
            )
    backend = load_white_box(model)
    with progress_bar(err) as hook:
        activations = None
        if found is not None:
            pairs = load_contrast(contrast or found.taxonomy)
            share = split_budget(budget)
            activations = calibrated_steering(backend, found, pairs, wanted, out_dir,
                                              str(vectors_file), mode, share, hook)  # fmt: skip
        run = steer_by_decoding(backend, wanted, instrument, out_dir, strategy, reward, detector,
                                budget, seed, limit, max_strength, activations, hook)  # fmt: skip
    write_results(run.plain, out_dir / "unsteered")
    paths = write_results(run.steered, out_dir)
    docs = [results_json(run.plain), results_json(run.steered)]
    docs[0]["label"], docs[1]["label"] = "unsteered", "steered"
    write_card(docs, paths["card"], f"Steering {model} toward {','.join(wanted)} via {via}")
    record = run.as_dict()
    title = (
        f"Steering via {via} on {run.plain.instrument.name} (measured by {run.steered.detector})"
    )
    table = Table(title=title)
    for column in ("value", "target", "measured", "95% CI", "flipped", "reached"):
        table.add_column(column, justify="left" if column == "value" else "right")
    for value, change in wanted.items():
        shift = record["measured_shift"].get(value)
        if shift is None:
            table.add_row(value, f"{change:+.2f}", "n/a", "n/a", "n/a", "no prompt")
            continue
        low, high = shift["ci"]
        table.add_row(
            value,
            f"{change:+.2f}",
            f"{shift['shift']:+.3f}",
            "n/a" if low is None else f"{low:+.3f} to {high:+.3f}",
            f"+{shift['flipped_toward']} / -{shift['flipped_away']} of {shift['n']}",
            "yes" if shift["reached"] else "no",
        )
    out.print(table)
    cal, aligned = record["decoding"], record["alignment"]
    if run.activations is not None:
        comp = run.activations.composition
        out.print(f"activations: {comp.fluency_cost:+.1%} perplexity on neutral text "
                  f"(share {split_budget(budget):.1%} of the budget)")  # fmt: skip
    edge = "the maximum tried" if cal["reached_maximum"] else "the largest within the budget"
    out.print(f"decoding: {strategy} {cal['setting']} = {cal['strength']:g} ({edge}; calibration "
              f"cost {cal['fluency_cost']:+.1%}, budget {cal['budget']:.1%})")  # fmt: skip
    cost = aligned["fluency"]["cost"]
    speed = aligned["speed"]
    plain_tps, tps = speed["tokens_per_second_plain"], speed["tokens_per_second"]
    out.print("fluency cost " + ("n/a" if cost is None else f"{cost:+.1%}") + " perplexity of "
              f"the answers under the unsteered model (budget {budget:.0%}); tokens/s "
              + ("n/a" if tps is None else f"{tps:.1f}") + " aligned, "
              + ("n/a" if plain_tps is None else f"{plain_tps:.1f}") + " plain")  # fmt: skip
    (out_dir / "steering.json").write_text(json.dumps(record, indent=1) + "\n")
    out.print(f"results: {paths['results']} (unsteered: {out_dir / 'unsteered' / 'results.json'})")
    out.print(f"card:    {paths['card']}")


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
    from valuescope.steering.export import export_gguf
    from valuescope.steering.operators import parse_steer

    check_out_file(out_file, "control-vector.gguf")
    steering = parse_steer(steer_spec, flag="STEER_SPEC")
    export_gguf(steering, out_file, model_hint)
    terms = ", ".join(f"{t.value}@{t.layer}={t.coef:+g}" for t in steering.terms)
    out.print(f"control vector ({terms}): {out_file}")
    out.print(f"run it with: llama-cli -m MODEL.gguf --control-vector {out_file}")


def vectors_import(
    source: Annotated[
        Path,
        typer.Argument(
            help="A control-vector .gguf (repeng, llama.cpp) or .safetensors of "
            "{layer: vector} (steering-vectors)."
        ),
    ],
    value: Annotated[str, typer.Option(help="The value the vector stands for.")],
    model: LocalModelOpt = "smollm2",
    taxonomy: Annotated[str, typer.Option(help="Taxonomy of the value.")] = "schwartz",
    contrast: Annotated[
        str | None, typer.Option(help="Pairs to measure it on (default: built-in set).")
    ] = None,
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="valuescope vector file to write.")
    ] = Path("runs/imported.safetensors"),
) -> None:
    """Import another tool's vector: measured on valuescope's pairs, saved in its format."""
    from valuescope.backends import load_white_box
    from valuescope.errors import UsageError
    from valuescope.vectors.contrast import load_contrast
    from valuescope.vectors.controlvector import (
        check_import_value,
        import_directions,
        load_directions,
    )

    check_out_file(out_file, "imported.safetensors")
    directions = load_directions(source)
    pairs = load_contrast(contrast or taxonomy)
    try:  # before the model loads
        check_import_value(pairs, value)
    except UsageError as error:
        raise UsageError(f"--value {value!r}: {error}") from None
    backend = load_white_box(model)
    found = import_directions(directions, value, backend, pairs, str(source))
    found.save(out_file)
    vv = found[value]
    out.print(
        f"{value}: {len(vv.layers)} layer(s); best layer {vv.best_layer}, accuracy on "
        f"{vv.n_held_out} pairs {vv.best.probe_accuracy:.2f}"
    )
    flipped = found.extra.get("flipped_layers")
    if flipped:
        out.print(
            f"flipped at layer(s) {', '.join(map(str, flipped))}: upholding answers read lower "
            "on the direction as given, so it is stored the other way round"
        )
    out.print(f"vectors: {out_file}")
