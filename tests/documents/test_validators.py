"""Requisite checks against the official check-digit rules, on computed and well-known public numbers."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest

from portal.documents.validators import (
    RequisiteError,
    normalize_digits,
    validate_bik,
    validate_correspondent_account,
    validate_inn,
    validate_kpp,
    validate_ogrn,
    validate_ogrnip,
    validate_settlement_account,
)

# --- an independent reference, written plainly from the rules -------------------------------------


def ref_weighted_remainder(digits: str, weights: list[int], modulus: int) -> int:
    total = 0
    for index in range(len(weights)):
        total += int(digits[index]) * weights[index]
    return total % modulus


def ref_inn10_remainder(first9: str) -> int:
    return ref_weighted_remainder(first9, [2, 4, 10, 3, 5, 9, 4, 6, 8], 11)


def ref_inn12_remainders(first11: str) -> tuple[int, int]:
    r1 = ref_weighted_remainder(first11[:10], [7, 2, 4, 10, 3, 5, 9, 4, 6, 8], 11)
    r2 = ref_weighted_remainder(first11, [3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8], 11)
    return r1, r2


def ref_account_key_sum(digits23: str) -> int:
    total = 0
    for index, char in enumerate(digits23):
        weight = [7, 1, 3][index % 3]
        total += int(char) * weight
    return total


def ref_account_key_digit(prefix3: str, account_without_key: str) -> str:
    """The 9th account digit (the key) that makes the weighted sum end in 0."""
    for key in "0123456789":
        candidate = account_without_key[:8] + key + account_without_key[8:]
        if ref_account_key_sum(prefix3 + candidate) % 10 == 0:
            return key
    raise AssertionError("some key digit always fits: weight of position 12 is 3, coprime with 10")


def single_digit_changes(value: str) -> Iterator[str]:
    for index, char in enumerate(value):
        for digit in "0123456789":
            if digit != char:
                yield value[:index] + digit + value[index + 1 :]


def assert_rejected(check: Callable[[], None], field: str, message_part: str) -> None:
    with pytest.raises(RequisiteError) as caught:
        check()
    assert caught.value.field == field
    assert message_part in caught.value.message


def random_digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


# --- computed samples ------------------------------------------------------------------------------
# A check "(sum mod 11) mod 10" cannot tell remainder 0 from 10 (and mod 13: 0/10, 1/11, 2/12), so a
# single changed digit is always caught only when the sample's remainder is one of 1..9 (3..9 for
# mod 13). The samples are picked that way; the colliding remainders get their own tests.


def computed_inns10(count: int = 20) -> list[str]:
    rng = random.Random(10)
    found = []
    while len(found) < count:
        first9 = random_digits(rng, 9)
        remainder = ref_inn10_remainder(first9)
        if 1 <= remainder <= 9:
            found.append(first9 + str(remainder))
    return found


def computed_inns12(count: int = 20) -> list[str]:
    rng = random.Random(12)
    found = []
    while len(found) < count:
        first10 = random_digits(rng, 10)
        r1 = ref_weighted_remainder(first10, [7, 2, 4, 10, 3, 5, 9, 4, 6, 8], 11)
        if not 1 <= r1 <= 9:
            continue
        first11 = first10 + str(r1)
        r2 = ref_inn12_remainders(first11)[1]
        found.append(first11 + str(r2 % 10))
    return found


def computed_ogrns(count: int = 20) -> list[str]:
    rng = random.Random(13)
    found = []
    while len(found) < count:
        # 1 and 5 are the first digits of an ОГРН (2, 6–9 begin a ГРН, 3 an ОГРНИП): see the first-digit tests.
        first12 = str(rng.choice("15")) + random_digits(rng, 11)
        remainder = int(first12) % 11
        if 1 <= remainder <= 9:
            found.append(first12 + str(remainder))
    return found


def computed_ogrnips(remainders: range, count: int = 20) -> list[str]:
    rng = random.Random(15)
    found = []
    while len(found) < count:
        first14 = "3" + random_digits(rng, 13)
        remainder = int(first14) % 13
        if remainder in remainders:
            found.append(first14 + str(remainder)[-1])
    return found


# --- ИНН -------------------------------------------------------------------------------------------


def test_sberbank_inn_is_valid() -> None:
    # 7707083893: 7·2 + 7·4 + 0·10 + 7·3 + 0·5 + 8·9 + 3·4 + 8·6 + 9·8 = 14+28+0+21+0+72+12+48+72 = 267;
    # 267 = 24·11 + 3, so the check digit is 3, which is the 10th digit.
    validate_inn("7707083893", "org")


@pytest.mark.parametrize("inn", computed_inns10())
def test_computed_org_inn_is_valid_and_every_single_digit_change_is_caught(inn: str) -> None:
    validate_inn(inn, "org")
    for changed in single_digit_changes(inn):
        assert_rejected(lambda changed=changed: validate_inn(changed, "org"), "inn", "контрольное число ИНН")


@pytest.mark.parametrize("inn", computed_inns12())
def test_computed_ip_inn_is_valid_and_every_single_digit_change_is_caught(inn: str) -> None:
    validate_inn(inn, "ip")
    for changed in single_digit_changes(inn):
        assert_rejected(lambda changed=changed: validate_inn(changed, "ip"), "inn", "контрольное число ИНН")


def test_org_inn_whose_remainder_is_10_has_check_digit_0() -> None:
    first9 = next(f"{n:09d}" for n in range(10**8, 10**9) if ref_inn10_remainder(f"{n:09d}") == 10)
    validate_inn(first9 + "0", "org")
    assert_rejected(lambda: validate_inn(first9 + "1", "org"), "inn", "Неверное контрольное число ИНН")


def test_ip_inn_needs_both_check_digits() -> None:
    inn = computed_inns12(1)[0]
    wrong_second = inn[:11] + str((int(inn[11]) + 1) % 10)
    wrong_first = inn[:10] + str((int(inn[10]) + 1) % 10) + inn[11]
    for bad in (wrong_first, wrong_second):
        assert_rejected(lambda bad=bad: validate_inn(bad, "ip"), "inn", "Неверное контрольное число ИНН")


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        ("", "org", "Укажите ИНН"),
        ("", "ip", "Укажите ИНН"),
        ("770708389", "org", "ИНН должен состоять из 10 цифр (организация) или 12 цифр (ИП)"),
        ("77070838931", "org", "ИНН должен состоять из 10 цифр (организация) или 12 цифр (ИП)"),
        ("7707083893123", "ip", "ИНН должен состоять из 10 цифр (организация) или 12 цифр (ИП)"),
        ("7707083893", "ip", "ИНН ИП должен состоять из 12 цифр"),
        ("770708389A", "org", "ИНН должен состоять только из цифр"),
        ("7707 083893", "org", "ИНН должен состоять только из цифр"),
        ("７７０７０８３８９３", "org", "ИНН должен состоять только из цифр"),
        ("-707083893", "org", "ИНН должен состоять только из цифр"),
    ],
)
def test_malformed_inn_is_rejected_with_a_specific_message(value: str, kind: str, message: str) -> None:
    assert_rejected(lambda: validate_inn(value, kind), "inn", message)  # type: ignore[arg-type]


def test_valid_ip_inn_is_rejected_as_organisation_inn() -> None:
    assert_rejected(
        lambda: validate_inn(computed_inns12(1)[0], "org"),
        "inn",
        "ИНН организации должен состоять из 10 цифр",
    )


@pytest.mark.parametrize(("value", "kind"), [("0000000000", "org"), ("000000000000", "ip")])
def test_all_zero_inn_is_refused_although_its_check_digits_add_up(value: str, kind: str) -> None:
    # Issue #14: zeros give check digits 0, so the weighted sums pass; the FNS schema refuses such an ИНН later.
    assert_rejected(lambda: validate_inn(value, kind), "inn", "ИНН не может состоять из одних нулей")  # type: ignore[arg-type]


def test_requisite_error_is_a_value_error_with_field_and_message() -> None:
    with pytest.raises(ValueError, match="Неверное контрольное число ИНН"):
        validate_inn("7707083894", "org")


# --- КПП -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kpp", ["770701001", "7707AB001", "773601001", "7707Z0001"])
def test_valid_kpp(kpp: str) -> None:
    validate_kpp(kpp)


@pytest.mark.parametrize(
    ("kpp", "message"),
    [
        ("", "Укажите КПП"),
        ("77070100", "КПП должен состоять из 9 символов"),
        ("7707010011", "КПП должен состоять из 9 символов"),
        ("7707ab001", "Неверный формат КПП"),
        ("77070100A", "Неверный формат КПП"),
        ("A70701001", "Неверный формат КПП"),
        ("7707 1001", "Неверный формат КПП"),
        ("7707АВ001", "Неверный формат КПП"),  # Cyrillic А and В look Latin but are not allowed
    ],
)
def test_malformed_kpp(kpp: str, message: str) -> None:
    assert_rejected(lambda: validate_kpp(kpp), "kpp", message)


def test_all_zero_kpp_is_refused() -> None:
    # Issue #14: "000000000" fits the pattern (9 digits) but the FNS schema's КППТип refuses it.
    assert_rejected(lambda: validate_kpp("000000000"), "kpp", "КПП не может состоять из одних нулей")


# --- ОГРН / ОГРНИП -----------------------------------------------------------------------------------


def test_sberbank_ogrn_is_valid() -> None:
    # 102770013219 = 11 · 9342728474 + 5 (11 · 9342728474 = 102770013214); 5 mod 10 = 5, the 13th digit.
    validate_ogrn("1027700132195")


@pytest.mark.parametrize("ogrn", computed_ogrns())
def test_computed_ogrn_and_its_single_digit_changes(ogrn: str) -> None:
    validate_ogrn(ogrn)
    for changed in single_digit_changes(ogrn):
        assert_rejected(lambda changed=changed: validate_ogrn(changed), "ogrn", "контрольное число ОГРН")


def test_ogrn_with_remainder_10_has_check_digit_0() -> None:
    first12 = next(str(n) for n in range(102770013210, 102770013300) if n % 11 == 10)
    validate_ogrn(first12 + "0")
    assert_rejected(lambda: validate_ogrn(first12 + "1"), "ogrn", "Неверное контрольное число ОГРН")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Укажите ОГРН"),
        ("102770013219", "ОГРН должен состоять из 13 цифр"),
        ("10277001321950", "ОГРН должен состоять из 13 цифр"),
        ("102770013219O", "ОГРН должен состоять только из цифр"),
    ],
)
def test_malformed_ogrn(value: str, message: str) -> None:
    assert_rejected(lambda: validate_ogrn(value), "ogrn", message)


@pytest.mark.parametrize("ogrnip", computed_ogrnips(range(3, 10)))
def test_computed_ogrnip_and_its_single_digit_changes(ogrnip: str) -> None:
    validate_ogrnip(ogrnip)
    for changed in single_digit_changes(ogrnip):
        assert_rejected(lambda changed=changed: validate_ogrnip(changed), "ogrnip", "контрольное число ОГРНИП")


@pytest.mark.parametrize(("remainder", "check_digit"), [(10, "0"), (11, "1"), (12, "2")])
def test_ogrnip_with_two_digit_remainder_uses_its_last_digit(remainder: int, check_digit: str) -> None:
    first14 = next(str(n) for n in range(30450000000000, 30450000000100) if n % 13 == remainder)
    validate_ogrnip(first14 + check_digit)
    for wrong in "0123456789":
        if wrong != check_digit:
            assert_rejected(lambda wrong=wrong: validate_ogrnip(first14 + wrong), "ogrnip", "контрольное число ОГРНИП")
    with pytest.raises(RequisiteError):
        validate_ogrnip(first14 + str(remainder))  # the whole remainder does not fit in one digit


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Укажите ОГРНИП"),
        ("30450000000001", "ОГРНИП должен состоять из 15 цифр"),
        ("1027700132195", "ОГРНИП должен состоять из 15 цифр"),
        ("3045000000000x1", "ОГРНИП должен состоять только из цифр"),
    ],
)
def test_malformed_ogrnip(value: str, message: str) -> None:
    assert_rejected(lambda: validate_ogrnip(value), "ogrnip", message)


# --- БИК and accounts ------------------------------------------------------------------------------

SBER_BIK = "044525225"
# Key check of the correspondent account: "0" + BIK digits 5–6 ("25") + account, weights 7,1,3:
#   0 2 5 | 3 0 1 | 0 1 8 | 1 0 4 | 0 0 0 | 0 0 0 | 0 0 2 | 2 5
#   0+2+15 + 21+0+3 + 0+1+24 + 7+0+12 + 0 + 0 + 0+0+6 + 14+5 = 110, which ends in 0.
SBER_CORRESPONDENT = "30101810400000000225"
# Key check of the settlement account: BIK's last three digits "225" + account, weights 7,1,3:
#   2 2 5 | 4 0 7 | 0 2 8 | 1 0 9 | 3 8 0 | 0 0 0 | 0 0 0 | 0 1
#   14+2+15 + 28+0+21 + 0+2+24 + 7+0+27 + 21+8+0 + 0 + 0 + 0+1 = 170, which ends in 0.
SBER_SETTLEMENT = "40702810938000000001"


def test_well_known_sberbank_requisites_are_valid() -> None:
    validate_bik(SBER_BIK)
    validate_correspondent_account(SBER_CORRESPONDENT, SBER_BIK)
    validate_settlement_account(SBER_SETTLEMENT, SBER_BIK)
    assert ref_account_key_sum("0" + "25" + SBER_CORRESPONDENT) == 110
    assert ref_account_key_sum("225" + SBER_SETTLEMENT) == 170


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Укажите БИК"),
        ("04452522", "БИК должен состоять из 9 цифр"),
        ("0445252250", "БИК должен состоять из 9 цифр"),
        ("04452522Б", "БИК должен состоять только из цифр"),
    ],
)
def test_malformed_bik(value: str, message: str) -> None:
    assert_rejected(lambda: validate_bik(value), "bik", message)


def computed_accounts(count: int = 10) -> list[tuple[str, str]]:
    rng = random.Random(20)
    pairs = []
    for _ in range(count):
        bik = "04" + random_digits(rng, 7)
        without_key = "40702810" + random_digits(rng, 11)
        key = ref_account_key_digit(bik[-3:], without_key)
        pairs.append((without_key[:8] + key + without_key[8:], bik))
    return pairs


@pytest.mark.parametrize(("account", "bik"), [(SBER_SETTLEMENT, SBER_BIK), *computed_accounts()])
def test_settlement_account_single_digit_changes_are_caught(account: str, bik: str) -> None:
    validate_settlement_account(account, bik)
    for changed in single_digit_changes(account):
        assert_rejected(
            lambda changed=changed: validate_settlement_account(changed, bik),
            "account_number",
            "контрольный ключ не сходится с БИК банка",
        )
    # The same account number at another bank (different last three BIK digits) does not fit.
    for changed_bik in single_digit_changes(bik[-3:]):
        other_bik = bik[:6] + changed_bik
        with pytest.raises(RequisiteError):
            validate_settlement_account(account, other_bik)


def test_settlement_account_does_not_depend_on_the_first_six_bik_digits() -> None:
    validate_settlement_account(SBER_SETTLEMENT, "999999225")


@pytest.mark.parametrize(
    ("account", "bik", "field", "message"),
    [
        ("", SBER_BIK, "account_number", "Укажите Расчётный счёт"),
        ("4070281093800000000", SBER_BIK, "account_number", "Расчётный счёт должен состоять из 20 цифр"),
        ("407028109380000000011", SBER_BIK, "account_number", "Расчётный счёт должен состоять из 20 цифр"),
        ("4070281093800000000I", SBER_BIK, "account_number", "только из цифр"),
        (SBER_SETTLEMENT, "04452522", "bik", "БИК должен состоять из 9 цифр"),
    ],
)
def test_malformed_settlement_account(account: str, bik: str, field: str, message: str) -> None:
    assert_rejected(lambda: validate_settlement_account(account, bik), field, message)


def test_correspondent_account_single_digit_changes_are_caught() -> None:
    for changed in single_digit_changes(SBER_CORRESPONDENT):
        with pytest.raises(RequisiteError) as caught:
            validate_correspondent_account(changed, SBER_BIK)
        assert caught.value.field == "correspondent_account"


def test_computed_correspondent_accounts() -> None:
    rng = random.Random(30)
    for _ in range(20):
        bik = "04" + random_digits(rng, 7)
        without_key = "30101810" + random_digits(rng, 11)
        key = ref_account_key_digit("0" + bik[4:6], without_key)
        account = without_key[:8] + key + without_key[8:]
        validate_correspondent_account(account, bik)
        # The key is tied to BIK digits 5–6 only.
        validate_correspondent_account(account, bik[:4] + bik[4:6] + "000")
        wrong_bik = bik[:4] + str((int(bik[4]) + 1) % 10) + bik[5:]
        with pytest.raises(RequisiteError):
            validate_correspondent_account(account, wrong_bik)


@pytest.mark.parametrize(
    ("account", "message"),
    [
        ("", "Укажите Корреспондентский счёт"),
        ("3010181040000000022", "Корреспондентский счёт должен состоять из 20 цифр"),
        ("40702810938000000001", "Корреспондентский счёт должен начинаться с 301"),
        ("3010181040000000022S", "только из цифр"),
    ],
)
def test_malformed_correspondent_account(account: str, message: str) -> None:
    assert_rejected(lambda: validate_correspondent_account(account, SBER_BIK), "correspondent_account", message)


# --- normalising ------------------------------------------------------------------------------------


def test_normalize_digits_removes_spaces_people_paste() -> None:
    assert normalize_digits(" 7707 083\u00a0893\t") == "7707083893"
    validate_inn(normalize_digits("7707 083 893"), "org")
    assert normalize_digits("4070 2810 9380 0000 0001") == SBER_SETTLEMENT


# --- issue #21: every kind of account a Russian customer may hold ------------------------------------------
#
# Real public requisites of the Federal Treasury's bodies (as printed in their payment details since 2021) and of
# Bank of Russia units (the pre-2021 revenue accounts of УФК по г. Москве, still the plainest public accounts kept
# by a Bank of Russia unit). Each is checked by the plain reference above, so the test says which rule fits.

# ГУ Банка России по ЦФО//УФК по г. Москве г. Москва: БИК, ЕКС, treasury account for revenue (03100).
MOSCOW_TOFK_BIK = "004525988"
MOSCOW_EKS = "40102810545370000003"
MOSCOW_REVENUE_TREASURY_ACCOUNT = "03100643000000017300"
TREASURY_EXAMPLES = [
    (MOSCOW_TOFK_BIK, MOSCOW_EKS),
    ("014030106", "40102810945370000005"),  # Северо-Западное ГУ Банка России//УФК по г. Санкт-Петербургу
    ("017003983", "40102810445370000059"),  # Отделение Тула Банка России//УФК по Тульской области
]
# Accounts kept by a Bank of Russia unit: ГУ Банка России по ЦФО (044525000), Отделение 1 Москва (044583001).
BANK_OF_RUSSIA_ACCOUNTS = [("40101810045250010041", "044525000"), ("40101810800000010041", "044583001")]


@pytest.mark.parametrize(("bik", "eks"), TREASURY_EXAMPLES)
def test_single_treasury_account_is_a_correspondent_account_keyed_as_a_bank_of_russia_account(
    bik: str, eks: str
) -> None:
    # Kept by a Bank of Russia unit, so keyed with "0" + БИК digits 5–6, not with the treasury body's own digits 7–9.
    assert ref_account_key_sum("0" + bik[4:6] + eks) % 10 == 0
    assert ref_account_key_sum(bik[-3:] + eks) % 10 != 0
    validate_correspondent_account(eks, bik)
    for changed in single_digit_changes(eks):
        with pytest.raises(RequisiteError) as caught:
            validate_correspondent_account(changed, bik)
        assert caught.value.field == "correspondent_account"


def test_treasury_account_goes_with_the_single_treasury_account() -> None:
    # A treasury account carries no key of the Bank of Russia's rule: it fits neither conditional number.
    assert ref_account_key_sum(MOSCOW_TOFK_BIK[-3:] + MOSCOW_REVENUE_TREASURY_ACCOUNT) % 10 != 0
    assert ref_account_key_sum("0" + MOSCOW_TOFK_BIK[4:6] + MOSCOW_REVENUE_TREASURY_ACCOUNT) % 10 != 0
    validate_settlement_account(MOSCOW_REVENUE_TREASURY_ACCOUNT, MOSCOW_TOFK_BIK, MOSCOW_EKS)
    validate_settlement_account("03224643450000007300", MOSCOW_TOFK_BIK, MOSCOW_EKS)  # Moscow city institutions


@pytest.mark.parametrize(
    ("account", "corr", "message"),
    [
        (
            MOSCOW_REVENUE_TREASURY_ACCOUNT,
            SBER_CORRESPONDENT,
            "Казначейский счёт (03…) открыт в органе Федерального казначейства: корреспондентским счётом для него "
            "указывают единый казначейский счёт (40102…), а не счёт банка",
        ),
        (
            "03100840000000017300",
            MOSCOW_EKS,
            "Неверный казначейский счёт: в 6–8-й цифрах должен стоять код рубля 643, например 03100643000000017300",
        ),
        (
            SBER_SETTLEMENT,
            MOSCOW_EKS,
            "С единым казначейским счётом (40102…) указывают казначейский счёт, начинающийся с 03",
        ),
    ],
)
def test_treasury_and_bank_accounts_do_not_mix(account: str, corr: str, message: str) -> None:
    assert_rejected(lambda: validate_settlement_account(account, MOSCOW_TOFK_BIK, corr), "account_number", message)


@pytest.mark.parametrize(("account", "bik"), BANK_OF_RUSSIA_ACCOUNTS)
def test_account_at_a_bank_of_russia_unit_is_keyed_with_bik_digits_5_and_6(account: str, bik: str) -> None:
    assert ref_account_key_sum("0" + bik[4:6] + account) % 10 == 0
    assert ref_account_key_sum(bik[-3:] + account) % 10 != 0  # the commercial banks' rule would refuse it
    validate_settlement_account(account, bik)
    validate_correspondent_account("", bik)  # a Bank of Russia unit's own customer has no correspondent account
    for changed in single_digit_changes(account):
        if changed.startswith("03"):
            continue  # that is a treasury account, checked by structure
        assert_rejected(
            lambda changed=changed: validate_settlement_account(changed, bik),
            "account_number",
            "контрольный ключ не сходится с БИК подразделения Банка России",
        )


def test_only_a_bank_of_russia_unit_may_have_no_correspondent_account() -> None:
    assert_rejected(
        lambda: validate_correspondent_account("", SBER_BIK), "correspondent_account", "Укажите Корреспондентский счёт"
    )
    assert_rejected(
        lambda: validate_correspondent_account("", MOSCOW_TOFK_BIK),
        "correspondent_account",
        "Укажите Корреспондентский счёт",
    )


def with_ogrn_check_digit(first12: str) -> str:
    remainder = int(first12) % 11
    return first12 + str(remainder % 10)


@pytest.mark.parametrize(
    ("first", "means"),
    [
        ("2", "это ГРН записи об изменениях, а не ОГРН"),
        ("3", "это ОГРНИП индивидуального предпринимателя"),
        ("4", "это ГРНИП записи об изменениях, а не ОГРНИП"),
        ("6", "это ГРН записи об изменениях, а не ОГРН"),
        ("9", "это ГРН записи об изменениях, а не ОГРН"),
        ("0", "такого номера записи не бывает"),
    ],
)
def test_ogrn_must_begin_with_1_or_5(first: str, means: str) -> None:
    number = with_ogrn_check_digit(first + "02770013219")
    assert_rejected(
        lambda: validate_ogrn(number),
        "ogrn",
        f"ОГРН организации начинается с 1 или 5, а этот номер — с {first}: {means}",
    )


def test_ogrn_beginning_with_5_is_valid() -> None:
    validate_ogrn(with_ogrn_check_digit("507774688731"))


@pytest.mark.parametrize("first", "012456789")
def test_ogrnip_must_begin_with_3(first: str) -> None:
    first14 = first + "0450000000001"
    number = first14 + str(int(first14) % 13 % 10)
    message = f"ОГРНИП начинается с 3, а этот номер — с {first}"
    assert_rejected(lambda: validate_ogrnip(number), "ogrnip", message)
