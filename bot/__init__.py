"""The Telegram adapter: commands in, signed requests to the executor out.

aiogram is imported here first, with its types built on first use (see ``bot.lazy_types``).
"""

from bot.lazy_types import import_aiogram

import_aiogram()
