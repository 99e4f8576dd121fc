"""Triage's text normalisation, flag rules and score table (no classifier involved)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from schemas.channels import Channel
from schemas.values import Flag, Priority
from services.runtime.errors import ConfigurationError
from services.triage import rules
from services.triage.rules import CueMatcher, FlagDetector, FlagRules, PriorityTable, flag_detector, priority_table
from services.triage.text import normalise


def flags_of(text: str) -> set[Flag]:
    return {match.flag for match in flag_detector().detect(normalise(text))}


def test_normalise_simplifies_translates_cantonese_and_folds_width_and_case() -> None:
    assert normalise("我張卡俾人盜用咗，唔該快啲幫我！ＡＢＣ　１２３") == "我张卡给人盗用了,请快些帮我!abc 123"
    assert normalise("  I   Want\tHELP ") == "i want help"


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("活着太累了，如果我不在了家里人就不用替我还了", Flag.SELF_HARM),
        ("I honestly don't see the point anymore, better off without me", Flag.SELF_HARM),
        ("有人冒充客服让我把钱转到安全账户", Flag.LIVE_FRAUD),
        ("我的卡刚刚被盗刷了三笔", Flag.LIVE_FRAUD),  # a fraud word and "just now", together
        ("Someone is using my card right now, transactions I did not make", Flag.LIVE_FRAUD),
        ("再不处理我就打12378", Flag.REGULATOR_THREAT),
        ("I will take this to the Financial Ombudsman", Flag.REGULATOR_THREAT),
        ("我会把这件事发到微博上让大家看看", Flag.MEDIA_THREAT),
        ("我已经咨询过律师了", Flag.LEGAL_THREAT),
        ("我媽住院做化療，實在冇錢還", Flag.VULNERABLE),
    ],
)
def test_flag_cues_in_many_wordings(text: str, flag: Flag) -> None:
    assert flag in flags_of(text)


@pytest.mark.parametrize(
    "text",
    ["I will pay the bill tomorrow, thanks", "请问信用卡年费怎么收", "我上个月的账单有一笔被盗刷，已经处理好了吗？"],
)
def test_no_flag_where_there_is_none(text: str) -> None:
    flags = flags_of(text)
    assert Flag.SELF_HARM not in flags
    assert Flag.LIVE_FRAUD not in flags
    assert Flag.VULNERABLE not in flags


def test_english_cues_match_whole_words_only() -> None:
    matcher = CueMatcher(["ill", "court", "生病"])
    assert [hit.cue for hit in matcher.find("i will pay; she is ill. 他生病了 courteous")] == ["ill", "生病"]


def test_each_flag_is_reported_once_with_its_cues() -> None:
    matches = flag_detector().detect(normalise("我要起诉你们，律师函已经准备好了，法院见"))
    assert [m.flag for m in matches] == [Flag.LEGAL_THREAT]
    assert set(matches[0].cues) >= {"起诉", "律师函", "法院"}


def test_the_score_table_is_complete_and_ordered() -> None:
    table = priority_table()
    assert table.thresholds[Priority.P1] > table.thresholds[Priority.P2] > table.thresholds[Priority.P3]
    assert set(table.always_p1_and_human) == {Flag.SELF_HARM, Flag.LIVE_FRAUD}


def _load_bad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, document: object) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / name).write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")

    class Files:
        def joinpath(self, *parts: str) -> Path:
            return tmp_path.joinpath(*parts)

    monkeypatch.setattr(rules.resources, "files", lambda _package: Files())


def test_a_broken_score_table_is_refused_with_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = yaml.safe_load(Path(rules.__file__).with_name("rules").joinpath("priority.yaml").read_text())
    document["thresholds"] = {"P1": 10, "P2": 45, "P3": 25}
    _load_bad(tmp_path, monkeypatch, "priority.yaml", document)
    with pytest.raises(ConfigurationError, match=r"priority.yaml: thresholds: .*P1 > P2 > P3"):
        rules._load("priority.yaml", PriorityTable)


def test_an_unknown_flag_in_the_lexicon_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _load_bad(tmp_path, monkeypatch, "flags.yaml", {"version": "x", "flags": {"angry": {"cues": ["气死了"]}}})
    with pytest.raises(ConfigurationError, match=r"flags.yaml: flags.angry"):
        rules._load("flags.yaml", FlagRules)


def test_a_together_rule_needs_two_groups() -> None:
    with pytest.raises(ValueError, match="at least two groups"):
        FlagDetector(FlagRules.model_validate({"version": "x", "flags": {"live_fraud": {"together": [[["骗"]]]}}}))


def test_batch_vectors_equal_the_reference_vectors_text_by_text() -> None:
    import numpy as np

    from services.triage.logic import Triage
    from services.triage.model import CUE_PREFIX, cue_tokens, features

    triage = Triage.shipped()
    index = triage.models.features
    samples = [
        "我張卡俾人盜用咗，唔該快啲幫我！[MOBILE#0123456789abcdef] 3,450.00元",
        "I lost my job and can't make the payment",
        "a",
        "  ",
        "请问营业时间是几点？还款怎么办理",
    ]
    texts = [normalise(sample) for sample in samples]
    cues = [cue_tokens(triage.cues.find(text)) for text in texts]
    batch = index.batch_vectors(texts, [[CUE_PREFIX + cue for cue in found] for found in cues])
    for number, (text, found) in enumerate(zip(texts, cues, strict=True)):
        reference = index.vector(features(text, found))
        span = slice(int(batch.bounds[number]), int(batch.bounds[number + 1]))
        assert np.array_equal(reference[0], batch.positions[span])
        assert np.allclose(reference[1], batch.weights[span])


def test_a_batch_gives_the_same_results_as_one_text_at_a_time() -> None:
    from schemas.channels import Channel
    from services.triage.logic import Triage

    triage = Triage.shipped()
    items = [
        ("我真的不想活了，欠了三家", Channel.APP, None),
        ("请问年费怎么收", Channel.APP, None),
        ("有人冒充客服让我转到安全账户", Channel.HOTLINE, None),
        ("监管转办：理财亏损", Channel.REGULATOR, None),
    ]
    assert triage.assess_many(items) == [triage.assess(*item) for item in items]


def test_published_reasons_are_valid_contract_values_though_built_without_validation() -> None:
    from schemas.triage import TriageReason
    from services.triage.logic import Triage
    from services.triage.train import load_training_rows

    triage = Triage.shipped()
    rows = load_training_rows()
    long_text = "，".join(row["text"] for row in rows[:40])  # many cues at once: the longest cue lists
    items = [(row["text"], Channel(row["channel"]), None) for row in rows] + [(long_text, Channel.LETTER, None)]
    published = [reason.published() for result in triage.assess_many(items) for reason in result.reasons]
    assert len(published) > len(items)
    for reason in published:
        assert TriageReason.model_validate(reason.model_dump()) == reason
