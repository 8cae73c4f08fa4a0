"""Audit the embedded model on the first 20 Schwartz dilemmas and print the profile.

Run: `.venv/bin/python examples/audit_embedded.py` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

from valuescope import RunSpec, load_backend, run_audit


def main() -> None:
    backend = load_backend("smollm2")
    result = run_audit("schwartz-dilemmas", RunSpec(limit=20), backend=backend)
    print(f"method: {result.method}; verdict: {result.verdict}")
    for value, score in result.profile.scores.items():
        print(f"{value:15s} {score.score:.2f}  [{score.ci[0]:.2f}, {score.ci[1]:.2f}]  n={score.n}")


if __name__ == "__main__":
    main()
