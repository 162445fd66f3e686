"""The operations benchmark (scripts/bench-ops): issue 17's three targets measured with real calls
through the sandbox Asterisk into an ``ivr-server run`` process. ``measure``: the arithmetic
(percentiles, /proc CPU ticks, overhead), pure and tested; ``server``: the server process, its
environment per arm, and the OTLP receiver; ``runs``: the three runners; ``report``: ops.json
to ops.md and ops.png."""
