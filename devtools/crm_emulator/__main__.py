"""`python -m devtools.crm_emulator`: the local amoCRM in the foreground, on its own port and state file."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .app import serve
from .emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Локальный эмулятор amoCRM для демо и тестов портала")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--state", default=None, help="JSON-файл состояния (общий с другими процессами)")
    parser.add_argument("--seed", type=int, default=0, help="сколько пользователей создать, если аккаунт пуст")
    parser.add_argument("--plan-limit", type=int, default=None, help="лимит активных пользователей тарифа CRM")
    parser.add_argument("--token-ttl", type=int, default=24 * 60 * 60, help="время жизни токена доступа, с")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--redirect-uri", default=None, help="куда вернуть владельца после «Разрешить»")
    options = vars(parser.parse_args(argv))
    # Each of the other options is the emulator's keyword of the same name (seed, plan_limit, token_ttl, client_id…).
    serve(options.pop("host"), options.pop("port"), options.pop("state"), **options)


if __name__ == "__main__":
    main()
