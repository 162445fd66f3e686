"""Flow-adapted recognition: language models, closed-question models and pronunciations
compiled from what a flow knows about its callers (compile.py ties the steps together)."""
