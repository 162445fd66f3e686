"""Personal data: one redaction step for logs, transcripts, audit inputs and webhooks."""
