"""Dialog: pure decision logic (DTMF collection, speech metering) and the flows that use it."""
