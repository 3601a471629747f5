"""The ``wingman`` command, on top of everything: it composes the bot and the executor."""
