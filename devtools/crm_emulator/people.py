"""Plausible Russian people for the emulator's seed: names, surnames with the feminine ending, Latin e-mails."""

from __future__ import annotations

import random

_MALE = (
    "Александр Дмитрий Максим Сергей Андрей Алексей Артём Илья Кирилл Михаил "
    "Никита Матвей Роман Егор Иван Павел Олег Виктор Николай Денис"
).split()
_FEMALE = (
    "Анна Мария Елена Ольга Наталья Татьяна Ирина Екатерина Светлана Юлия "
    "Анастасия Дарья Полина Ксения Виктория Алина Вера Софья Людмила Марина"
).split()
_SURNAMES = (
    "Иванов Смирнов Кузнецов Попов Васильев Петров Соколов Михайлов Новиков Фёдоров Морозов Волков "
    "Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев Орлов Андреев Макаров Никитин "
    "Захаров Зайцев Соловьёв Борисов Яковлев Григорьев Романов Воробьёв Сергеев Кузьмин Фролов"
).split()
_TRANSLIT = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch - y - e yu ya".replace("-", "").split(" "),
        strict=True,
    )
)


def person(rng: random.Random) -> tuple[str, str]:
    surname = rng.choice(_SURNAMES)
    if rng.random() < 0.5:
        return rng.choice(_MALE), surname
    return rng.choice(_FEMALE), surname + "а"


def translit(text: str) -> str:
    return "".join(_TRANSLIT.get(ch, ch) for ch in text.lower())


def unique_email(taken: set[str], local: str, domain: str) -> str:
    candidate = f"{local}@{domain}"
    number = 2
    while candidate.casefold() in taken:
        candidate = f"{local}{number}@{domain}"
        number += 1
    taken.add(candidate.casefold())
    return candidate
