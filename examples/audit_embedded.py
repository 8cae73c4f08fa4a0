"""Audit the embedded model on the first 20 Schwartz dilemmas and print the profile.

Run: `.venv/bin/python examples/audit_embedded.py` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

from valuescope import load_backend
from valuescope.audit import AuditConfig, run_audit


def main() -> None:
    backend = load_backend("smollm2")
    result = run_audit(AuditConfig(instrument="schwartz-dilemmas", limit=20), backend=backend)
    print(f"method: {result.method}; verdict: {result.diagnostics.verdict}")
    for value, score in result.profile.scores.items():
        print(f"{value:15s} {score.score:.2f}  [{score.ci[0]:.2f}, {score.ci[1]:.2f}]  n={score.n}")


if __name__ == "__main__":
    main()
