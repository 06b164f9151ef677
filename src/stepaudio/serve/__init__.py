"""The server: the OpenAI Realtime WebSocket, OpenAI-compatible HTTP routes and the web page
(`stepaudio serve`). Needs the `serve` extra (FastAPI, uvicorn)."""
