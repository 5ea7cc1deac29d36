"""Issue 13.8 and 13.9 in the store: a printed name identifies one active account, and a name
that mixes look-alike scripts is registered only once the registrar confirms it. Both
databases."""

from __future__ import annotations

import threading

import pytest

from workflow.core.errors import InputError
from workflow.core.names import MixedScriptName, name_key, script_mix
from workflow.identity import Identity
from workflow.store import Store

PASSWORD = "correct horse battery staple"


@pytest.mark.parametrize(
    "again",
    ["Ann Lee, RN", "ann lee, rn", "  Ann   Lee,  RN ", "Ａｎｎ Ｌｅｅ, RN", "ANN LEE, RN"],
)
def test_a_second_active_account_may_not_print_the_same_name(
    identity: Identity, again: str
) -> None:
    first = identity.add_user("a.lee", "Ann Lee, RN", ["nurse"], PASSWORD)
    with pytest.raises(InputError) as refused:
        identity.add_user("a.lee2", again, ["nurse"], PASSWORD)
    assert refused.value.field == "printed_name"
    assert "a.lee" in refused.value.message and first.id in refused.value.message
    assert [u.username for u in identity.list_users()] == ["a.lee"]  # nothing stored


def test_a_leavers_name_may_be_taken_but_the_leaver_cannot_return_over_it(
    identity: Identity,
) -> None:
    old = identity.add_user("a.lee", "Ann Lee, RN", ["nurse"], PASSWORD)
    identity.deactivate("a.lee", by="admin")
    new = identity.add_user("a.lee2", "ann lee, rn", ["nurse"], PASSWORD)
    assert new.id != old.id
    with pytest.raises(InputError) as refused:
        identity.reactivate("a.lee", by="admin")
    assert refused.value.field == "printed_name" and "a.lee2" in refused.value.message
    assert not identity.get_user("a.lee").active
    identity.deactivate("a.lee2", by="admin")
    assert identity.reactivate("a.lee", by="admin").active


def test_two_registrations_of_one_printed_name_at_once_keep_one(identity: Identity) -> None:
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def register(username: str) -> None:
        barrier.wait()
        try:
            identity.add_user(username, "Sam Twin, RN", ["nurse"], PASSWORD)
            outcomes.append("added")
        except InputError as exc:
            outcomes.append(exc.field)

    threads = [threading.Thread(target=register, args=(u,)) for u in ("s.twin1", "s.twin2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["added", "printed_name"]
    assert len([u for u in identity.list_users() if u.printed_name == "Sam Twin, RN"]) == 1


def test_a_printed_name_mixing_lookalike_scripts_needs_confirmation(identity: Identity) -> None:
    imitation = "Pаul Smith"  # the second letter is Cyrillic
    with pytest.raises(MixedScriptName) as warned:
        identity.add_user("p.smith", imitation, ["nurse"], PASSWORD)
    assert warned.value.field == "printed_name" and warned.value.code == "mixed_script_name"
    assert "U+0430" in warned.value.message and "Cyrillic" in warned.value.message
    assert identity.list_users() == []
    user = identity.add_user("p.smith", imitation, ["nurse"], PASSWORD, confirm_mixed_script=True)
    assert user.printed_name == imitation
    # It is not the same printed name as the real "Paul Smith": both may exist, told apart.
    assert identity.add_user("p.smith2", "Paul Smith", ["nurse"], PASSWORD).active


@pytest.mark.parametrize(
    ("family", "given", "field"),
    [
        ("Smith", "Pаul", "given_name"),
        ("Рора", "Maria", "family_name"),  # each part in one script; together they imitate
        ("Ivanоv", "Ivan", "family_name"),
    ],
)
def test_a_patient_name_mixing_lookalike_scripts_needs_confirmation(
    store: Store, family: str, given: str, field: str
) -> None:
    kwargs = {"family_name": family, "given_name": given, "date_of_birth": "1970-01-01"}
    with pytest.raises(MixedScriptName) as warned:
        store.add_patient(mrn="MRN-1", created_by="t", **kwargs)
    assert warned.value.field == field
    assert store.list_patients() == []
    patient = store.add_patient(mrn="MRN-1", created_by="t", confirm_mixed_script=True, **kwargs)
    assert (patient.family_name, patient.given_name) == (family, given)


@pytest.mark.parametrize(
    "name",
    [
        "Łukasiewicz-Ñúñez Zoë",
        "Παπαδοπούλου Ελένη",
        "Петрова Анна",
        "שרה כהן",
        "محمد عبد الرحمن",
        "李小龍",
        "山田 はなこ ヤマダ",  # Han, Hiragana and Katakana: Japanese
        "김민준 金敏俊",  # Hangul with Hanja
        "Sarah כהן",  # two scripts, nothing alike
        "Nadia Alvarez, RN",
    ],
)
def test_names_in_one_script_or_unlike_scripts_are_not_warned(store: Store, name: str) -> None:
    assert script_mix(name) is None
    family, _, given = name.rpartition(" ")
    store.add_patient(
        mrn="MRN-2",
        family_name=family or name,
        given_name=given,
        date_of_birth="1970-01-01",
        created_by="t",
    )


def test_name_key_folds_case_width_and_spaces() -> None:
    assert name_key(" Ann  LEE ") == name_key("ann lee") == name_key("Ａｎｎ ｌｅｅ")
    assert name_key("Straße") == name_key("STRASSE")
    assert name_key("Ann Lee") != name_key("Ann Leé")
