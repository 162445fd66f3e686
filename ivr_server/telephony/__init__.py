"""The telephony edge: ARI (REST and the events WebSocket) and the per-call session."""
