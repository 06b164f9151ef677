"""`stepaudio serve`: the real-time WebSocket, OpenAI-compatible HTTP routes and the web page, in
one process (FastAPI + uvicorn). Models load once, before the port opens."""

from __future__ import annotations

import argparse
import socket
import sys

from stepaudio.errors import OptionError


def check_address(host: str, port: int) -> None:
    """Fail before the models load (a minute) when the port is out of range, the host unknown or the
    address taken; uvicorn would find out only after them."""
    if not 0 <= port <= 65535:
        raise OptionError(f"--port {port} is not a port number (0-65535)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as error:  # socket.gaierror included
        raise OptionError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None


def cmd_serve(args: argparse.Namespace) -> None:
    try:
        import uvicorn

        from stepaudio.serve.app import create_app
    except ImportError as error:
        raise OptionError(f"the server needs its extra: pip install 'stepaudio[serve]' ({error})") from None
    from stepaudio.commands.voice_chat_options import load_engine, session_config
    from stepaudio.serve.models import Models
    from stepaudio.serve.settings import Limits, ServeSettings

    limits = Limits(
        max_sessions=args.max_sessions,
        max_message_bytes=args.max_message_bytes,
        max_upload_bytes=args.max_upload_mb << 20,
        max_text_chars=args.max_text_chars,
        max_session_seconds=args.max_session_seconds,
        idle_timeout_seconds=args.idle_timeout,
    )
    settings = ServeSettings.with_env_key(args.api_key, model=args.model, cors_origins=tuple(args.cors), limits=limits)
    if args.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        print(f"warning: serving on {args.host} without an API key: anyone who reaches it can use it", file=sys.stderr)
    session_defaults = session_config(args)  # bad settings fail before the models load
    check_address(args.host, args.port)
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    engine = load_engine(args, lambda line: print(line, file=sys.stderr))
    models = Models.from_engine(args.model, engine, session_defaults)
    print(f"open http://{args.host}:{args.port}/ in a browser", file=sys.stderr, flush=True)
    uvicorn.run(
        create_app(models, settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        # the app answers oversized messages itself with an error event; past 4x, the socket closes (1009)
        ws_max_size=4 * limits.max_message_bytes,
    )


def register(commands: argparse._SubParsersAction) -> None:
    from stepaudio.commands.voice_chat_options import add_engine_args
    from stepaudio.serve.settings import API_KEY_ENV, Limits

    defaults = Limits()
    parser = commands.add_parser(
        "serve",
        help="serve voice chat: realtime WebSocket, OpenAI-style HTTP routes and a web page",
        description="Serve GET /v1/realtime (OpenAI Realtime events over a WebSocket, pcm16 24 kHz), "
        "POST /v1/audio/speech, POST /v1/audio/transcriptions, POST /v1/chat/completions, GET /v1/models, "
        "GET /health, and the voice-chat web page at /. Needs the serve extra: pip install 'stepaudio[serve]'.",
    )
    add_engine_args(parser)  # the models, and the session settings every connection starts with
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--api-key", help=f"require `Authorization: Bearer KEY` on /v1 (default: ${API_KEY_ENV}, else none)"
    )
    parser.add_argument(
        "--cors",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages on ORIGIN (e.g. https://example.com) call the API; repeatable (default: none)",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-sessions",
        type=int,
        default=defaults.max_sessions,
        help="real-time sessions at once (default: %(default)s)",
    )
    limits.add_argument(
        "--max-message-bytes",
        type=int,
        default=defaults.max_message_bytes,
        help="largest WebSocket message (default: %(default)s)",
    )
    limits.add_argument(
        "--max-upload-mb",
        type=int,
        default=defaults.max_upload_bytes >> 20,
        help="largest HTTP request body in MiB (default: %(default)s)",
    )
    limits.add_argument(
        "--max-text-chars",
        type=int,
        default=defaults.max_text_chars,
        help="longest text to speak or chat message (default: %(default)s)",
    )
    limits.add_argument(
        "--max-session-seconds",
        type=float,
        default=defaults.max_session_seconds,
        help="a real-time session ends after this (default: %(default)s)",
    )
    limits.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout_seconds,
        help="... or after this many seconds without a client message (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="server log level (default: %(default)s)",
    )
    parser.set_defaults(run=cmd_serve)
