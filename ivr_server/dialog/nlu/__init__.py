"""Understanding what the caller said: the intent model and its data."""
