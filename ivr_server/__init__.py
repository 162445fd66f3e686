"""ivr-server: an agentic voice IVR application server for Asterisk."""

__version__ = "0.1.0"
