"""Speech recognition engines behind one streaming interface (see base.py)."""
