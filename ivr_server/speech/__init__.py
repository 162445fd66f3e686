"""Speech engines: recognition (asr/) behind one streaming interface."""
