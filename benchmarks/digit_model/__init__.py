"""The recipe behind the shipped isolated-digit model (ivr_server/speech/asr/bundled/digits-8k):
FSDD and synthetic digits, telephone-channel augmentation and features, fine-tuning the
speech_embedding CNN (torch, imported only by ``training``), leave-one-speaker-out scoring and
the ONNX export. scripts/train-digits drives it; the run-time preprocessing it trains on is
``ivr_server.speech.asr.digit_model``."""
