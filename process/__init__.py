"""What every Wingman process is built on, and imports nothing of ours: the settings base
(``process.settings``) and running until a signal (``process.lifecycle``).

The bottom layer: ``bot``, ``executor`` and the ``wingman`` command import it; it imports
none of them (``tests/test_layering.py`` checks).
"""
