"""The error pages: Russian, in the portal's layout, or JSON for the API and clients that ask for it."""

from __future__ import annotations

from typing import Any

from flask import Flask, g, render_template, request
from flask_wtf.csrf import CSRFError


def error_page(code: int, title: str, text: str) -> Any:
    wants_json = request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"
    if wants_json:
        return {"error": text}, code
    # An error page is no place for the over-limit dialog (portal.seats.views reads this).
    g.error_page = True
    return render_template("error.html", code=code, title=title, text=text), code


def init_app(app: Flask) -> None:
    @app.errorhandler(400)
    def bad_request(e: Any) -> Any:
        return error_page(400, "Неверный запрос", getattr(e, "description", None) or "Запрос не понят.")

    @app.errorhandler(CSRFError)
    def csrf_error(_e: Any) -> Any:
        return error_page(
            400,
            "Форма устарела",
            "Страница была открыта слишком давно или форма отправлена не с нашего сайта. "
            "Обновите страницу и отправьте форму ещё раз.",
        )

    @app.errorhandler(403)
    def forbidden(_e: Any) -> Any:
        return error_page(403, "Нет доступа", "У вашей роли в этой компании нет доступа к этой странице.")

    @app.errorhandler(404)
    def not_found(_e: Any) -> Any:
        return error_page(404, "Страница не найдена", "Такой страницы нет, или она вам недоступна.")

    @app.errorhandler(405)
    def method_not_allowed(_e: Any) -> Any:
        return error_page(405, "Действие не поддерживается", "Этот адрес не принимает такой запрос.")

    @app.errorhandler(413)
    def too_large(_e: Any) -> Any:
        limit_mb = app.config["MAX_UPLOAD_BYTES"] // (1024 * 1024)
        return error_page(413, "Файл слишком большой", f"Можно загрузить файл не больше {limit_mb} МБ.")

    @app.errorhandler(429)
    def too_many(e: Any) -> Any:
        # A limit with an on_breach page of its own (the checkout) keeps it; this text is about sign-in codes.
        if getattr(e, "response", None) is not None:
            return e.response
        return error_page(
            429,
            "Слишком много запросов",
            "Вы слишком часто запрашиваете код. Подождите немного и попробуйте снова.",
        )

    @app.errorhandler(500)
    def server_error(_e: Any) -> Any:
        return error_page(500, "Ошибка на нашей стороне", "Мы уже знаем о ней. Попробуйте повторить через минуту.")
