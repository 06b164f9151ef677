"""`stepaudio serve`: the real-time WebSocket, OpenAI-compatible HTTP routes and the web page, in
one process (FastAPI + uvicorn). Models load once, before the port opens."""

from __future__ import annotations

import argparse
import dataclasses
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


def allowed_hosts(host: str, extra: list[str]) -> tuple[str, ...]:
    """The Host header names served: the loopback names, the bound address (unless a wildcard, which
    names no host: clients then use the names given with --allowed-hosts) and those given."""
    from stepaudio.serve.settings import LOOPBACK_HOSTS

    bound = () if host in ("0.0.0.0", "::", "") else (host.strip("[]"),)
    return tuple(dict.fromkeys(LOOPBACK_HOSTS + bound + tuple(extra)))


def cmd_serve(args: argparse.Namespace) -> None:
    try:
        import uvicorn

        from stepaudio.serve.app import create_app
    except ImportError as error:
        raise OptionError(f"the server needs its extra: pip install 'stepaudio[serve]' ({error})") from None
    from stepaudio.commands.voice_chat_options import load_engine, session_config
    from stepaudio.serve.connections import server_config
    from stepaudio.serve.models import Models
    from stepaudio.serve.settings import Limits, ServeSettings

    limits = Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)})
    settings = ServeSettings.with_env_key(
        args.api_key,
        model=args.model,
        cors_origins=tuple(args.cors),
        allowed_hosts=allowed_hosts(args.host, args.allowed_hosts),
        limits=limits,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        print(f"warning: serving on {args.host} without an API key: anyone who reaches it can use it", file=sys.stderr)
    if args.host in ("0.0.0.0", "::") and not args.allowed_hosts:
        print(
            "warning: only requests to localhost are served; name the hosts clients use with --allowed-hosts",
            file=sys.stderr,
        )
    session_defaults = session_config(args)  # bad settings fail before the models load
    check_address(args.host, args.port)
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    engine = load_engine(args, lambda line: print(line, file=sys.stderr))
    models = Models.from_engine(args.model, engine, session_defaults, limits.max_turn_seconds)
    print(f"open http://{args.host}:{args.port}/ in a browser", file=sys.stderr, flush=True)
    uvicorn.Server(
        server_config(create_app(models, settings), args.host, args.port, limits, log_level=args.log_level)
    ).run()


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
    parser.add_argument(
        "--allowed-hosts",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name clients reach the server by (the Host header), besides the bound address and "
        "localhost, 127.0.0.1, ::1: other names are refused, so a web page cannot reach the server through "
        "a name it controls (DNS rebinding); repeatable; '*' allows any",
    )
    limits = parser.add_argument_group("limits (each refusal is an HTTP 4xx/503 or an `error` event)")
    for limit in dataclasses.fields(Limits):
        kind = int if limit.type in (int, "int") else float
        limits.add_argument(
            f"--{limit.name.replace('_', '-')}",
            *limit.metadata["aliases"],
            dest=limit.name,
            type=kind,
            metavar="N" if kind is int else "SECONDS",
            default=getattr(defaults, limit.name),
            help=f"{limit.metadata['help']} (default: %(default)s)",
        )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="server log level (default: %(default)s)",
    )
    parser.set_defaults(run=cmd_serve)
