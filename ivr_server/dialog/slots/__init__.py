"""Slot values from what the caller said or keyed: pure parsers, one per slot type."""
