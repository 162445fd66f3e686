"""Measuring code behind the scripts in ``scripts/`` (each script is a thin entry point over a
module here), next to the results it writes. Development-side: it may use ``tests.support``
(SIPp scenarios, loopback capture) and is not installed with the server."""
