"""Back-end tools: HTTP calls a flow declares, with timeouts, retries and a breaker per service."""
