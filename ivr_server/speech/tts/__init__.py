"""Text to speech: engines behind one contract, sentence streaming, a prompt cache, a lexicon."""
