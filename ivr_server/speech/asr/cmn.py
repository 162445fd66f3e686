"""Where a telephone utterance's cepstral mean starts.

PocketSphinx normalizes each utterance by a running cepstral mean, which starts from
``cmninit`` (the model's default, 40,3,-1,0,..., a wideband microphone's) and follows the audio
from there. Every stream starts afresh (a result must not depend on the caller decoded
before), so with that default the first second of every telephone turn was heard through the
wrong mean: band-limited 8 kHz speech (upsampled, its top band filled) has a very different
one. Starting from the mean of real telephone speech instead cut the word error rate of
spoken banking requests through the telephone line by about a third (16 Piper and espeak-ng
requests in a flow's own words, 30 dB line noise: 73 % -> 47 % with the flow's model).

``TELEPHONE_CMN`` is the mean over FSDD's recordings (real voices at 8 kHz, three speakers,
every take of every digit) sent through the standard telephone voice band (300-3400 Hz,
mu-law); ``scripts/calibrate-cmn`` recomputes it (ivr_server/evaluation/calibrate.py). It
describes the channel and the front end, not a benchmark's sentences or voices.
"""

TELEPHONE_CMN = "50.70,9.08,-4.12,5.78,-3.55,-20.76,-4.47,-15.93,-12.57,-2.82,-15.36,-5.35,-2.71"
