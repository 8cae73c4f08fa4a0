"""Scoring methods: their probabilities follow from the backend's numbers as documented."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from valuescope import Chat
from valuescope.audit.scoring import (
    NEUTRAL_PROMPT,
    ChoiceMethod,
    GenerateMethod,
    LikelihoodMethod,
    answer_prompt,
    choice_prompt,
    map_answer,
    presentation_orders,
)
from valuescope.backends import LoglikelihoodRequest
from valuescope.instruments.dilemma import load_dilemmas

ITEMS = load_dilemmas(Path(__file__).parent / "fixtures" / "mini-dilemmas.yaml").items[:2]


def test_presentation_orders() -> None:
    assert presentation_orders(2) == [(0, 1), (1, 0)]
    assert len(presentation_orders(3)) == 6
    assert presentation_orders(4) == [(0, 1, 2, 3), (1, 2, 3, 0), (2, 3, 0, 1), (3, 0, 1, 2)]


def test_choice_method_normalises_label_probabilities_per_order(tiny_backend: Any) -> None:
    result = ChoiceMethod()(tiny_backend, ITEMS, "original", None)[0]
    item = ITEMS[0]
    for order_result in result.orders:
        shown = [item.options[i].text for i in order_result.order]
        context = Chat(choice_prompt(item.text, shown))
        a, b = tiny_backend.loglikelihood_naive(
            [LoglikelihoodRequest(context, "A"), LoglikelihoodRequest(context, "B")]
        )
        p_first = math.exp(a.logprob) / (math.exp(a.logprob) + math.exp(b.logprob))
        assert order_result.p[order_result.order[0]] == pytest.approx(p_first, abs=1e-4)
    # Geometric combination: a constant log-odds bonus for the first slot cancels out.
    first, second = result.orders
    logit = (math.log(first.p[0] / first.p[1]) + math.log(second.p[0] / second.p[1])) / 2
    assert result.p[0] == pytest.approx(1 / (1 + math.exp(-logit)))
    mean = ChoiceMethod(combine="mean")(tiny_backend, ITEMS, "original", None)[0]
    assert mean.p[0] == pytest.approx((first.p[0] + second.p[0]) / 2)


def test_geometric_combination_cancels_an_additive_position_bias() -> None:
    from valuescope.audit.scoring import ItemResult, OrderResult

    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    bias, preference = 2.0, 0.4  # log-odds bonus for the first slot; true log-odds for option 0
    shown_first = OrderResult((0, 1), (sigmoid(bias + preference), 1 - sigmoid(bias + preference)))
    shown_second = OrderResult((1, 0), (sigmoid(preference - bias), 1 - sigmoid(preference - bias)))
    result = ItemResult("x", "original", (shown_first, shown_second), "geometric")
    assert result.p[0] == pytest.approx(sigmoid(preference))
    assert ItemResult("x", "original", (shown_first, shown_second)).p[0] != pytest.approx(
        sigmoid(preference)
    )


@pytest.mark.parametrize("per_token", [True, False])
def test_likelihood_method_is_calibrated_pmi(tiny_backend: Any, per_token: bool) -> None:
    method = LikelihoodMethod(per_token=per_token, listed=False)
    result = method(tiny_backend, ITEMS, "original", "A persona.")[0]
    item = ITEMS[0]
    assert len(result.orders) == 1  # order-free without a listing
    scores = []
    for option in item.options:
        given, prior = tiny_backend.loglikelihood_naive(
            [
                LoglikelihoodRequest(
                    Chat(answer_prompt(item.text, None), "A persona."), option.text
                ),
                LoglikelihoodRequest(Chat(NEUTRAL_PROMPT), option.text),
            ]
        )
        pmi = given.logprob - prior.logprob
        scores.append(pmi / given.n_tokens if per_token else pmi)
    expected = 1 / (1 + math.exp(scores[1] - scores[0]))
    assert result.p[0] == pytest.approx(expected, abs=1e-4)


def test_listed_likelihood_presents_every_order(tiny_backend: Any) -> None:
    results = LikelihoodMethod(listed=True)(tiny_backend, ITEMS, "paraphrase", None)
    assert [r.wording for r in results] == ["paraphrase", "paraphrase"]
    assert [o.order for o in results[0].orders] == [(0, 1), (1, 0)]


def test_generate_method_counts_mapped_answers(tiny_backend: Any) -> None:
    results = GenerateMethod(samples=3)(tiny_backend, ITEMS, "original", None)
    for result in results:
        for order in result.orders:
            assert sum(order.p) == pytest.approx(1.0)
            # add-half smoothing: p_i = (c_i + 0.5) / (t + 1) for t of the 3 answers mapped
            fits = [
                t
                for t in range(4)
                if all(abs(p * (t + 1) - 0.5 - round(p * (t + 1) - 0.5)) < 1e-6 for p in order.p)
                and sum(round(p * (t + 1) - 0.5) for p in order.p) == t
            ]
            assert fits, order.p


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("A", 0),
        ("b) Go climbing", 1),
        ("Option B.", 1),
        ("I would help my sister move.", 0),
        ("I would go climbing at the new gym.", 1),
        ("Hard to say.", None),
    ],
)
def test_map_answer(answer: str, expected: int | None) -> None:
    assert (
        map_answer(answer, ["Help your sister move house.", "Go climbing at the new gym."])
        == expected
    )


def test_first_person_likelihood_scores_the_end_of_i_would(tiny_backend: Any) -> None:
    item = ITEMS[0]
    result = LikelihoodMethod(first_person=True)(tiny_backend, [item], "original", None)[0]
    scores = []
    for option in item.options:
        answer = " " + option.text[0].lower() + option.text[1:]
        given, prior = tiny_backend.loglikelihood_naive(
            [
                LoglikelihoodRequest(Chat(answer_prompt(item.text, None), None, "I would"), answer),
                LoglikelihoodRequest(Chat(NEUTRAL_PROMPT, None, "I would"), answer),
            ]
        )
        scores.append((given.logprob - prior.logprob) / given.n_tokens)
    assert result.p[0] == pytest.approx(1 / (1 + math.exp(scores[1] - scores[0])), abs=1e-4)
    assert tiny_backend.render(Chat("Hi", None, "I would")).endswith(
        "<|im_start|>assistant\nI would"
    )
