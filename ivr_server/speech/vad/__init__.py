"""Voice activity detection (energy, WebRTC, Silero) and pure endpointing for turn taking."""
