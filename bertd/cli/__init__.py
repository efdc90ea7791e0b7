"""The `bertd` command: `serve`, the HTTP client subcommands and `bertd demo`. The client side
talks to a server over HTTP only."""
