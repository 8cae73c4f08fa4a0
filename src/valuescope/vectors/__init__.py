"""White-box reading: contrastive pairs, value vectors per layer (extracted by an aggregator or
trained), one rule that measures a direction, reading texts, and other tools' vector files."""
