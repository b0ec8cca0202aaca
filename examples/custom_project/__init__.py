"""A small TRL project on vlmrl-trl: its own label set (labels.json), clip manifest (data.py), reward (rewards.py)."""
