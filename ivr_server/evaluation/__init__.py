"""Measuring understanding the way a caller is heard: synthetic callers (voices.py), the
telephone line (channel.py) and the spoken pipeline of a flow's state (spoken.py)."""
