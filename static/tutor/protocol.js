// What the browser and the server agree on, defined once for the page, its worklets and the live view.
// Wire protocol: docs/internal-contracts.md and the README ("Browser wire protocol").

// -- audio ----------------------------------------------------------------------------------------
// PCM16 little endian, mono, 24 kHz both ways: the microphone's frames and the assistant's audio.
// Python's counterpart: tutor/realtime/audio.py (SAMPLE_RATE, BYTES_PER_SAMPLE, CHANNELS).

export const WIRE_RATE = 24000;
export const FRAME_MS = 100;
// 100 ms at 24 kHz: 2400 samples, 4800 bytes per binary frame, well under the 32 KiB wire limit.
export const FRAME_SAMPLES = (WIRE_RATE * FRAME_MS) / 1000;

// -- playback reports ------------------------------------------------------------------------------
// `playback.report` {item_id, played_ms, kind}: the page tells the server what the learner hears, since
// the upstream generates audio faster than real time. Python's counterpart: tutor/realtime/playback.py
// (REPORT_KINDS), validated in tutor/realtime/wire.py.

export const PLAYBACK_START = "start"; // the item's first samples reached the audio output
export const PLAYBACK_PROGRESS = "progress"; // every ~500 ms while it plays
export const PLAYBACK_END = "end"; // it played to its end (a flushed item has no end: `playback.flushed` says)

// -- websocket close codes ------------------------------------------------------------------------
// The server refuses a socket for good with these: reconnecting cannot help.
// Python's counterparts: tutor/auth.py (4401, 4403) and tutor/consumers.py (4409).

export const CLOSE_NOT_AUTHENTICATED = 4401; // anonymous: log in first
export const CLOSE_FORBIDDEN = 4403; // logged in, but not a learner (/ws/tutor/) or not a teacher (/ws/teacher/live/)
export const CLOSE_SUPERSEDED = 4409; // opened in another tab: reconnecting would take it back
export const REFUSAL_CODES = [CLOSE_NOT_AUTHENTICATED, CLOSE_FORBIDDEN, CLOSE_SUPERSEDED];
// Closes after which reconnecting is fine (Python's counterparts: tutor/realtime/wire.py):
export const CLOSE_NOT_READING = 4008; // the page read nothing it was sent for too long (a frozen tab)
// Daphne sends only 1000 and 3000-4999 from an application: RFC 6455's 1011 and 1013 take these instead.
export const CLOSE_TRY_AGAIN_LATER = 4503; // the server was at capacity; `state: ended` and `at_capacity` came first
export const CLOSE_SERVER_ERROR = 4500; // a server bug ended the session (cleanly); `session_error` came first
export const CLOSE_SERVICE_RESTART = 4012; // like RFC 6455 1012: the server process drains for a deploy; a session being started starts again elsewhere
export const CLOSE_TOO_MANY = 4429; // the page sent far more (or far more bad) messages than it ever does
export const CLOSE_MESSAGE_TOO_BIG = 1009; // a frame over 1 MiB (sent by Daphne itself; the page never sends one)

// -- server events the page treats specially ----------------------------------------------------
// Python's counterpart: tutor/realtime/wire.py (busy).

// The tutor service is rate limited: the server retries by itself; the page shows the message
// until the tutor speaks again.
export const EVENT_BUSY = "busy";
