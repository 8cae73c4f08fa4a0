"""Measuring: instrument kinds behind one protocol (`kinds`), the run (`run`), scoring methods,
profiles with CIs, diagnostics and the verdict, persona recovery, paired shifts, and the run's
files (results.json, items.csv, the card)."""
