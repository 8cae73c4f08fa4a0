"""`valuescope rewards fit|eval|score`: personalized value rewards (registered on the app in
`cli.app`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from valuescope.cli.options import check_out_file, err, out

rewards = typer.Typer(
    help="Personalized value rewards: fit a user model on people's choices, evaluate it on "
    "held-out choices, score texts for a user.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

PreferencesOpt = Annotated[
    str,
    typer.Option(
        "--preferences",
        "-p",
        help="Comparisons: CSV/JSONL with user, prompt, chosen, rejected [, weight]; PRISM's "
        "utterances or conversations, PersonalLLM's table; or hf:<dataset>[#config][@split].",
    ),
]
ModelFileOpt = Annotated[
    Path, typer.Option("--model", "-m", help="Reward model file from `valuescope rewards fit`.")
]


@rewards.command()
def fit(
    preferences: PreferencesOpt,
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="Reward model to write (JSON).")
    ] = Path("runs/reward.json"),
    kind: Annotated[
        str,
        typer.Option(
            "--fit",
            help="shared (one reward for everyone), low-rank (per-user weights in a shared "
            "basis, with a population prior) or mixture (users as mixtures of prototypes).",
        ),
    ] = "low-rank",
    heads: Annotated[
        str,
        typer.Option(
            help="Detector whose value readings are the named heads: embed, lexicon, probe:<model>."
        ),
    ] = "embed",
    taxonomy: Annotated[str, typer.Option(help="Taxonomy of the named heads.")] = "schwartz",
    unnamed: Annotated[
        int,
        typer.Option(help="Unnamed heads: principal directions of chosen-minus-rejected features."),
    ] = 6,
    rank: Annotated[int, typer.Option(help="low-rank: the basis's rank.")] = 4,
    prototypes: Annotated[int, typer.Option(help="mixture: the number of prototypes.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the mixture's start.")] = 0,
) -> None:
    """Fit value heads and a user model on comparisons; write the reward model."""
    from valuescope.errors import UsageError
    from valuescope.progress import progress_bar
    from valuescope.rewards.preferences import load_preferences
    from valuescope.rewards.reward import fit_reward
    from valuescope.rewards.users import FitSettings, check_fit

    check_out_file(out_file, "reward.json")
    check_fit(kind)
    if unnamed < 0 or rank < 1 or prototypes < 1:
        raise UsageError("--unnamed must be 0 or more, --rank and --prototypes 1 or more")
    prefs = load_preferences(preferences)
    settings = FitSettings(rank=rank, prototypes=prototypes, seed=seed)
    with progress_bar(err) as hook:
        reward = fit_reward(prefs, kind, heads, taxonomy, unnamed, settings, hook)
    reward.save(out_file)
    users = len(reward.users)
    dropped = ", ".join(f"{n} for {why}" for why, n in prefs.dropped.items()) or "none"
    out.print(f"{len(prefs)} comparisons of {users} users ({prefs.layout}); dropped: {dropped}")
    table = Table(title=f"Heads ({heads}) and the population's weights ({kind} fit)")
    for column in ("head", "weight", "closest named head (r)"):
        table.add_column(column, justify="left" if column == "head" else "right")
    beta = reward.weights(None)
    labels = {f"pc{i + 1}": h for i, h in enumerate(reward.heads.labels)}
    for name, w in zip(reward.heads.names, beta, strict=True):
        label = labels.get(name)
        table.add_row(name, f"{w:+.3f}", f"{label.value} ({label.r:+.2f})" if label else "")
    out.print(table)
    out.print(f"reward model: {out_file}")


@rewards.command("eval")
def eval_(
    model: ModelFileOpt,
    preferences: PreferencesOpt,
    shots: Annotated[
        int,
        typer.Option(
            help="Users absent from the fit are first fitted from their first SHOTS rows, then "
            "scored on the rest."
        ),
    ] = 10,
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the accuracies as JSON.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap CIs.")] = 0,
) -> None:
    """Accuracy of a reward model on held-out comparisons, per user and overall, with CIs."""
    from valuescope.errors import UsageError
    from valuescope.rewards.evaluate import evaluate
    from valuescope.rewards.preferences import load_preferences
    from valuescope.rewards.reward import Reward

    if out_file is not None:
        check_out_file(out_file, "eval.json")
    if shots < 1:
        raise UsageError(f"--shots {shots}: give 1 or more")
    reward = Reward.load(model)
    prefs = load_preferences(preferences)
    found = evaluate(reward, prefs, shots, seed)
    table = Table(title=f"Agreement with held-out choices ({model.name})")
    for column in ("user", "accuracy", "95% CI", "n", "fitted from shots"):
        table.add_column(column, justify="left" if column == "user" else "right")
    for user, acc in found.users.items():
        fitted = "yes" if user in found.fitted_here else "no"
        table.add_row(Text(user), f"{acc.accuracy:.3f}", _ci(acc.ci), str(acc.n), fitted)
    for name, acc in (("seen", found.seen), ("unseen", found.unseen), ("overall", found.overall)):
        if acc.n:
            table.add_row(name, f"{acc.accuracy:.3f}", _ci(acc.ci), str(acc.n), "", style="bold")
    out.print(table)
    if found.skipped:
        err.print(
            f"{len(found.skipped)} user(s) not in the model had no more than --shots {shots} "
            "rows and were not scored",
            markup=False,
        )
    if out_file is not None:
        from valuescope.audit.results import json_safe

        out_file.parent.mkdir(parents=True, exist_ok=True)
        doc = {"model": str(model), "preferences": preferences, **found.as_dict()}
        out_file.write_text(json.dumps(json_safe(doc), indent=1) + "\n", encoding="utf-8")
        out.print(f"accuracies: {out_file}")


def _ci(ci: tuple[float, float]) -> str:
    return f"{ci[0]:.3f} to {ci[1]:.3f}"


@rewards.command()
def score(
    texts: Annotated[list[str], typer.Argument(help="Responses to score.")],
    model: ModelFileOpt,
    user: Annotated[
        str | None, typer.Option(help="A user of the model (default: the population's reward).")
    ] = None,
    prompt: Annotated[str, typer.Option(help="The prompt the texts answer.")] = "",
    parts: Annotated[int, typer.Option(help="Largest parts shown per text.")] = 3,
) -> None:
    """Each text's reward for a user, with the heads that contribute most."""
    from valuescope.rewards.reward import Reward

    reward = Reward.load(model)
    reward.weights(user)  # an unknown user fails here, before the detector loads
    found = reward.score([prompt] * len(texts), texts, user)
    table = Table(title=f"Reward for {user or 'the population'} ({model.name})")
    for column in ("text", "reward", "largest parts"):
        table.add_column(column, justify="right" if column == "reward" else "left")
    for i, text in enumerate(texts):
        order = sorted(range(len(found.names)), key=lambda j: -abs(found.parts[i, j]))[:parts]
        shown = ", ".join(f"{found.names[j]} {found.parts[i, j]:+.2f}" for j in order)
        table.add_row(Text(text), f"{found.reward[i]:+.3f}", shown)
    out.print(table)
