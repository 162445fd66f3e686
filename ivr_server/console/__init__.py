"""The live console for operators, at /console/ on the metrics listener.

state.py holds what it shows (fed on the event loop from what the store writer is given);
auth.py checks tokens; web.py answers HTTP on the listener's threads; page.py is the page.
"""

from ivr_server.console.state import ConsoleState, install_error_tap
from ivr_server.console.web import Console

__all__ = ["Console", "ConsoleState", "install_error_tap"]
