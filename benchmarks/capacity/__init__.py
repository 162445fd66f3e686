"""The capacity benchmark (scripts/bench-capacity, issue 18): real calls with speech both ways
through the sandbox Asterisk into an ``ivr-server run`` process, ramped in levels until one
fails. ``measure``: the arithmetic (caller-side reply latency and RTP from a capture, histogram
quantiles, /proc readings, verdicts), pure and tested; ``levels``: running one level;
``report``: capacity.json to capacity.md and capacity.png."""
