"""Sol Helps webhook handoff: settings, logging and the CLI shared by every command."""

__version__ = "0.1.0"
