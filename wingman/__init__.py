"""The ``wingman`` command and the settings layer shared by the bot and the executor."""
