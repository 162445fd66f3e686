"""The VAD benchmark (scripts/bench-vad): FSDD speech in generated noise (``streams``), each
detector's frame and endpointing figures (``measure``), and the tables it writes (``report``)."""
