"""The one audio format of Parla, the browser and the Realtime API: PCM16 little endian, mono, 24 kHz (pure).

The API calls it `audio/pcm` (rate 24000); the browser's worklets use the same numbers. It lives here,
in the record app that imports nothing from `tutor`, so that both the learner-audio WAV writer
(assessments.services) and the Django-free realtime layer (tutor/realtime/audio.py, which adds the
sizing helpers) read one definition. No Django import: tutor/realtime stays Django-free.
"""

SAMPLE_RATE = 24_000
BYTES_PER_SAMPLE = 2  # 16-bit
CHANNELS = 1
