"""One module per `stepaudio` subcommand, each with `register(commands)`; imports stay light."""
