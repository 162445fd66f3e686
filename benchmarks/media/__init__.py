"""The media benchmark (scripts/bench-media): one run of N echo calls against a fresh server
(``run``), the server process and metrics probes it reads (``probe``), the bare-loop platform
floor (``floor``), and the medians, tables and plot it writes (``report``)."""
