"""Media: RTP on the wire, G.711/L16 codecs, per-call receivers and paced senders, prompts."""
