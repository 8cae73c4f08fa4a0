"""What the `valuescope` commands share: the two consoles, the option types and server flags."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

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

LocalModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Local model spec (hidden states needed): smollm2 (embedded), hf:<dir or hub id>, "
        "gguf:<file>.",
    ),
]

InstrumentOpt = Annotated[
    str, typer.Option("--instrument", "-i", help="Built-in instrument name or file path.")
]
MethodOpt = Annotated[
    str,
    typer.Option(
        help="Scoring method: auto; for dilemmas likelihood, likelihood-first-person, choice or "
        "generate; for likert questionnaires scale or generate; for pairwise instruments choice."
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder; rerunning resumes.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for bootstrap CIs and sampling.")]
LimitOpt = Annotated[int | None, typer.Option(help="Score only the first N items (quick looks).")]
TaxonomyOpt = Annotated[
    str | None,
    typer.Option(
        help="Taxonomy of JSON Lines instruments and of dailydilemmas:, utility-options: and "
        "table: sources (default for those sources: schwartz)."
    ),
]

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


SERVER_FLAGS: dict[str, Any] = {
    "api_key_env": ApiKeyEnvOpt,
    "concurrency": ConcurrencyOpt,
    "timeout": TimeoutOpt,
    "max_retries": MaxRetriesOpt,
    "max_rps": MaxRpsOpt,
    "token_budget": TokenBudgetOpt,
    "tokenizer": TokenizerOpt,
}
"""The flags of server models, declared once: `with_server_flags` adds them to a command."""

Command = TypeVar("Command", bound=Callable[..., None])


def with_server_flags(command: Command) -> Command:
    """`command` with the server flags added to its options; it receives them checked and
    turned into backend options as `options` (empty for a local model)."""
    hints = typing.get_type_hints(command, include_extras=True)
    own = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in inspect.signature(command).parameters.values()
        if p.name != "options"
    ]
    flags = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
        for name, kind in SERVER_FLAGS.items()
    ]

    @functools.wraps(command)
    def run(**kwargs: Any) -> None:
        given = {name: kwargs.pop(name) for name in SERVER_FLAGS}
        command(**kwargs, options=server_options(kwargs["model"], **given))

    signature = inspect.Signature([*own, *flags])
    run.__signature__ = signature  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    return typing.cast(Command, run)


def server_options(
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

    from valuescope.backends.retry import RetryPolicy
    from valuescope.backends.server import ServerSettings
    from valuescope.backends.spec import parse_spec
    from valuescope.errors import UsageError

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
    if tokenizer is not None:
        from valuescope.backends.template import check_tokenizer

        check_tokenizer(tokenizer)
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


def check_out_file(path: Path, example: str, flag: str = "--out") -> Path:
    """A file to write, checked before any model loads: a folder there is refused, since the
    work would otherwise be lost when the file cannot be written at the end."""
    from valuescope.errors import UsageError

    if path.is_dir():
        raise UsageError(
            f"{flag} {str(path)!r} is a folder; give a file path, e.g. {path / example}"
        )
    return path


def check_out_dir(path: Path, flag: str = "--out") -> Path:
    """A run folder, checked before any model loads: not a file, and a place that can be
    written (the folder is created here, so a later failure cannot lose finished work)."""
    from valuescope.folders import writable_folder

    return writable_folder(path, f"{flag} {str(path)!r}", "give a folder the run's files can go to")
