"""The real-time voice conversation: VAD-driven turns, streaming listening, speculative answers,
barge-in, a text context, and typed events (`events`) for front ends and the server."""
