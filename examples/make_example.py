"""Generate the bundled example project ``examples/support-bot`` deterministically.

A customer-support assistant for a fictional online shop. The data is synthetic but shaped like
the real thing, with problems planted for every check:

* ``tickets_2024`` (OpenAI chat JSONL, spec v1): good answers; a few malformed lines, exact
  duplicates, one conversation far over the context limit, multi-turn conversations;
* ``tickets_2025`` (OpenAI chat JSONL, spec v2: the refund window changed from 30 to 14 days);
  some 2025 tickets were still answered with the old 30-day rule (blended criteria);
* ``contractor_batch`` (Alpaca JSON): a degraded vendor batch — truncated answers,
  boilerplate, placeholders, padding;
* ``production.jsonl``: real-looking user queries, including a domain training never covers
  (warranty claims), a small tail (gift cards) and drafts with bracketed alternatives;
* ``benchmark.jsonl``: the evaluation set; some of its items leaked into training verbatim,
  lightly edited or paraphrased;
* ``annotations.csv``: five annotators' intent labels on a sample (one answers at random, one
  always gives the same label) plus senior-expert gold for some items.

    python examples/make_example.py [OUT_DIR]
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

NAMES = [
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Elif",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kemi",
    "Luca",
]
PRODUCTS = [
    "kettle",
    "desk lamp",
    "yoga mat",
    "blender",
    "backpack",
    "headphones",
    "coffee grinder",
    "phone case",
    "rain jacket",
    "water bottle",
    "air fryer",
    "bike light",
]

INTENTS: dict[str, dict[str, list[str]]] = {
    "order_status": {
        "area": ["orders"],
        "q": [
            "Where is my order {o}? It still says processing.",
            "Hi, I ordered a {p} on {d} and haven't received any update. Order {o}.",
            "Can you check the status of order {o}?",
            "My {p} was supposed to arrive {d}. What's going on with order {o}?",
            "Has order {o} shipped yet?",
        ],
        "a": [
            "I checked order {o}: your {p} left our warehouse yesterday and should arrive within 2 business days. You'll get a tracking email shortly.",
            "Thanks for waiting, {n}. Order {o} is packed and will ship today; delivery usually takes 2-4 business days.",
            "Order {o} is with the courier. The latest scan shows it at your local depot, so it should reach you tomorrow.",
        ],
    },
    "refund_request": {
        "area": ["refunds"],
        "q": [
            "I want a refund for my {p}, it stopped working after a week.",
            "How do I get my money back for order {o}?",
            "The {p} I received is not what I ordered. Can I get a refund?",
            "Can I still return the {p} I bought on {d}?",
            "Please refund order {o}, I changed my mind.",
        ],
        "a": [
            "I'm sorry about the {p}, {n}. You can return it within {w} days of delivery for a full refund: start the return from Orders > {o} > Return, and we refund within 5 business days of receiving it.",
            "Of course. Items can be returned within {w} days of delivery. I've opened a return for order {o}; print the label from your email and drop the parcel at any post office.",
            "Yes, our refund window is {w} days from delivery. Since your order {o} is inside it, I've started the refund; you'll see it on your card in 3-5 business days.",
        ],
    },
    "password_reset": {
        "area": ["account"],
        "q": [
            "I can't log in, I forgot my password.",
            "How do I reset my password?",
            "The reset link you sent me has expired, what now?",
            "I'm locked out of my account after too many attempts.",
        ],
        "a": [
            "No problem, {n}. Go to the sign-in page, choose 'Forgot password' and enter your email; the link is valid for 30 minutes.",
            "I've sent a new reset link to your email. It expires in 30 minutes, so use it soon. If it doesn't arrive, check your spam folder.",
            "For security the account locks for 15 minutes after five failed attempts. After that, use 'Forgot password' to set a new one.",
        ],
    },
    "change_address": {
        "area": ["orders"],
        "q": [
            "I need to change the delivery address for order {o}.",
            "I moved last week, can you update the shipping address on my order?",
            "Can I send order {o} to my office instead?",
        ],
        "a": [
            "I can change it as long as the order hasn't shipped. Order {o} is still being packed, so I've updated the address; you'll get a confirmation email.",
            "Sure, {n}. Please reply with the new address and I'll update order {o} before it leaves the warehouse.",
        ],
    },
    "billing_issue": {
        "area": ["billing"],
        "q": [
            "I was charged twice for order {o}.",
            "Why is there an extra charge on my card from your shop?",
            "My payment failed but the money left my account.",
        ],
        "a": [
            "I'm sorry for the trouble, {n}. The second charge on order {o} is a pre-authorisation; it is released automatically within 3 business days.",
            "I can see two charges for order {o}. I've refunded the duplicate; it takes 3-5 business days to show on your statement.",
        ],
    },
}
# intents production needs but training never covers
UNCOVERED = {
    "warranty_claim": [
        "My {p} broke after 8 months, is it still under warranty?",
        "How do I make a warranty claim for my {p}?",
        "The {p} has a manufacturing defect, does the 2-year warranty cover it?",
        "Warranty repair for {p}: do I send it to you or the manufacturer?",
        "What does the warranty on the {p} cover exactly?",
    ],
    "gift_card": [
        "Can I pay with a gift card and a credit card together?",
        "My gift card code doesn't work.",
    ],
}
# the evaluation set is written by a different team, in its own words
BENCH = [
    "A customer writes that the tracking page for parcel {o} has not changed in six days. What should they do?",
    "Explain to a customer how to reopen an account that was frozen after repeated wrong passwords.",
    "Somebody bought a {p} {d} and wants to send it back unopened: which policy applies?",
    "Draft a reply for a shopper whose card statement shows the same purchase twice.",
    "How can a buyer redirect a package that has not left the warehouse yet?",
    "What does a customer need to provide to cancel an order that was placed by mistake?",
    "Reply to a user asking whether the {p} they ordered can be delivered on a Saturday.",
    "A client never received the confirmation email for order {o}. How do you help?",
    "Tell a customer why a pending authorisation appears on their bank app after checkout.",
    "Write the answer for a user who typed the wrong email address when signing up.",
    "Can two discount codes be combined on one order?",
    "A customer's {p} arrived with a scratch. Describe the options you offer.",
    "What happens to loyalty points when an order is refunded?",
    "Respond to a shopper asking if the {p} comes with a manual in Spanish.",
    "How long does an exchange for a different size take?",
    "Someone wants to know whether they can pick up order {o} in a store.",
    "Explain how to change the phone number on an account.",
    "A user says the checkout page keeps timing out. What do you advise?",
    "What is the process when a parcel is marked delivered but is missing?",
    "Advise a customer who was charged in the wrong currency.",
]
BENCH_EXTRA = [
    "Do you ship to Norway?",
    "What are your opening hours for phone support?",
    "Can I buy a {p} in another colour?",
    "Is the {p} dishwasher safe?",
    "How do I unsubscribe from your newsletter?",
    "Do you offer student discounts?",
]


def fill(rng: random.Random, template: str, window: int = 30) -> str:
    return template.format(
        o=f"#{rng.randint(100000, 999999)}",
        p=rng.choice(PRODUCTS),
        n=rng.choice(NAMES),
        d=rng.choice(["Monday", "last Friday", "March 3", "the 12th", "two weeks ago"]),
        w=window,
    )


OPENERS = [
    "",
    "",
    "Hi, ",
    "Hello, ",
    "Hey there. ",
    "Good morning! ",
    "Quick question: ",
    "Sorry to bother you, ",
]
CLOSERS = [
    "",
    "",
    " Thanks!",
    " Thank you.",
    " Please help.",
    " Cheers, {n}",
    " It's urgent.",
    " Regards, {n}",
]
SIGNOFFS = [
    "",
    "",
    " Anything else I can help with?",
    " Have a great day!",
    " Let me know if you need more help.",
    " Thanks for your patience.",
    " — {n} from Northwind Home",
]


def conversation(rng: random.Random, intent: str, window: int) -> tuple[str, str]:
    spec = INTENTS[intent]
    q = (
        rng.choice(OPENERS)
        + fill(rng, rng.choice(spec["q"]), window)
        + fill(rng, rng.choice(CLOSERS))
    )
    a = fill(rng, rng.choice(spec["a"]), window) + fill(rng, rng.choice(SIGNOFFS))
    return q, a


def degrade(rng: random.Random, answer: str) -> str:
    kind = rng.choice(["truncate", "boilerplate", "placeholder", "verbose"])
    if kind == "truncate":
        words = answer.split()
        return " ".join(words[: max(3, len(words) // 3)])
    if kind == "boilerplate":
        return (
            "As an AI language model, I cannot access your account. "
            + answer
            + " Best regards, [Agent Name]"
        )
    if kind == "placeholder":
        return (
            answer.replace("order", "order [ORDER NUMBER]", 1)
            + " Please contact [INSERT EMAIL] for more."
        )
    return (
        "Thank you so much for reaching out to us today, we truly value you as a customer and we are "
        "always happy to help with any question you might have. " * 3
    ) + answer


def make(out: Path) -> None:
    rng = random.Random(20240101)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    system = "You are the support assistant of Northwind Home, an online shop. Be accurate, brief and kind."
    intents = list(INTENTS)
    bench_rng = random.Random(7)
    benchmark_q: list[str] = [fill(bench_rng, t) for t in BENCH]
    for t in BENCH_EXTRA:
        benchmark_q.append(fill(bench_rng, t))

    def record(
        i: int, src: str, intent: str, window: int, when: str, version: str, user: str | None = None
    ) -> dict:
        q, a = conversation(rng, intent, window)
        msgs = [
            {"role": "system", "content": system},
            {"role": "user", "content": user or q},
            {"role": "assistant", "content": a},
        ]
        if rng.random() < 0.15:  # a follow-up turn
            msgs += [
                {"role": "user", "content": "Thanks! And how long will that take?"},
                {
                    "role": "assistant",
                    "content": "Usually 3-5 business days. I'll keep the ticket open until it's done.",
                },
            ]
        return {
            "ticket_id": f"{src}-{i:04d}",
            "thread": f"{src}-t{i // 2:04d}",
            "created_at": when,
            "spec_version": version,
            "intent": intent,
            "area": INTENTS[intent]["area"][0],
            # customers told the superseded 30-day rule in 2025 came back unhappy more often
            "resolved": rng.random() < (0.5 if version == "2" and window == 30 else 0.87),
            "messages": msgs,
        }

    # ---- tickets_2024: spec v1, 30-day refunds
    t24 = []
    for i in range(420):
        month = 1 + i * 12 // 420
        t24.append(
            record(i, "t24", rng.choice(intents), 30, f"2024-{month:02d}-{1 + i % 28:02d}", "1")
        )
    paraphrases = {
        4: "If a package is still in the warehouse, how does a buyer get it redirected?",
        5: "What information does a customer have to give us to cancel an order placed by accident?",
    }
    for k in range(
        6
    ):  # benchmark items leaked: verbatim (0, 1), lightly edited (2, 3), paraphrased (4, 5)
        q = benchmark_q[k]
        if k == 2:
            q = q.upper().replace(".", " .")
        elif k == 3:
            q = q.replace("repeated", "repaeted").replace("account", "acount")
        elif k in paraphrases:
            q = paraphrases[k]
        t24[10 + k * 7]["messages"][1]["content"] = q
    for k in range(10):  # exact duplicates (re-exported tickets)
        dup = json.loads(json.dumps(t24[100 + k]))
        dup["ticket_id"] = f"t24-dup{k}"
        t24.append(dup)
    long_rec = record(999, "t24", "billing_issue", 30, "2024-06-01", "1")
    long_rec["messages"][2]["content"] = "Here is the full statement history. " + " ".join(
        f"Line {j}: charge of {j % 97}.{j % 10}0 EUR on order #{100000 + j}." for j in range(900)
    )
    t24.append(long_rec)
    lines = [json.dumps(r) for r in t24]
    lines.insert(
        57, '{"ticket_id": "t24-bad1", "messages": [{"role": "user", "content": "hi"'
    )  # truncated JSON
    lines.insert(
        130,
        json.dumps(
            {"ticket_id": "t24-bad2", "messages": [{"role": "user", "content": "Is anyone there?"}]}
        ),
    )
    lines.insert(
        201,
        json.dumps(
            {
                "ticket_id": "t24-bad3",
                "messages": [
                    {"role": "customer", "content": "hello"},
                    {"role": "assistant", "content": "Hi!"},
                ],
            }
        ),
    )
    lines.insert(
        260,
        json.dumps(
            {
                "ticket_id": "t24-bad4",
                "messages": [
                    {"role": "user", "content": "<script>alert('xss')</script> my order?"},
                    {"role": "assistant", "content": ""},
                ],
            }
        ),
    )
    (data / "tickets_2024.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # ---- tickets_2025: spec v2 (refund window 14 days); some agents still used the old rule
    t25 = []
    for i in range(300):
        month = 1 + i * 10 // 300
        intent = rng.choice(intents)
        window = 30 if (intent == "refund_request" and rng.random() < 0.3) else 14
        t25.append(record(i, "t25", intent, window, f"2025-{month:02d}-{1 + i % 28:02d}", "2"))
    t25.append(
        {
            **record(300, "t25", "order_status", 14, "2025-05-02", "2"),
            "messages": [
                {
                    "role": "user",
                    "content": "<script>alert('xss')</script> where is my <b>order</b>?",
                },
                {"role": "assistant", "content": "It ships today. <img src=x onerror=alert(1)>"},
            ],
        }
    )
    (data / "tickets_2025.jsonl").write_text(
        "\n".join(json.dumps(r) for r in t25) + "\n", encoding="utf-8"
    )

    # ---- contractor batch: Alpaca, degraded
    vendor = []
    for i in range(160):
        intent = rng.choice(intents)
        q, a = conversation(rng, intent, 14)
        bad = rng.random() < 0.75
        vendor.append(
            {
                "id": f"v-{i:04d}",
                "instruction": q,
                "input": "",
                "output": degrade(rng, a) if bad else a,
                "intent": intent,
                "area": INTENTS[intent]["area"][0],
                "collected": "2025-03-15",
                "batch": f"vendor-{i // 20}",
            }
        )
    (data / "contractor_batch.json").write_text(json.dumps(vendor, indent=1), encoding="utf-8")

    # ---- production sample: inputs only
    prod = []
    for i in range(700):
        r = rng.random()
        if r < 0.14:
            q = fill(rng, rng.choice(UNCOVERED["warranty_claim"]))
        elif r < 0.17:
            q = fill(rng, rng.choice(UNCOVERED["gift_card"]))
        else:
            q = conversation(rng, rng.choice(intents), 14)[0]
            if rng.random() < 0.2:  # drafts pasted from the help-centre form
                q = q.replace("order", "[order/purchase]", 1).replace("my", "my [item]", 1)
        prod.append({"query_id": f"p{i:05d}", "text": q, "logged_at": f"2025-11-{1 + i % 28:02d}"})
    (data / "production.jsonl").write_text(
        "\n".join(json.dumps(r) for r in prod) + "\n", encoding="utf-8"
    )

    # ---- benchmark (eval set): a paraphrase of some items also leaked into the 2025 tickets
    (data / "benchmark.jsonl").write_text(
        "\n".join(json.dumps({"id": f"b{i:03d}", "question": q}) for i, q in enumerate(benchmark_q))
        + "\n",
        encoding="utf-8",
    )

    # ---- replay pool: general formatting-instruction data (keeps a non-target capability)
    replay = []
    fmt_asks = [
        ("List {n} tips for packing a {p} for shipping as a numbered list.", "numbered"),
        ("Give the care instructions for a {p} as a bulleted list.", "bullets"),
        ("Reply only with JSON describing a {p} with the fields name and price.", "json"),
        ("Describe a {p} in exactly two sentences.", "two"),
    ]
    for i in range(80):
        ask, kind = fmt_asks[i % len(fmt_asks)]
        prod = PRODUCTS[(i * 7) % len(PRODUCTS)]
        n = 3 + i % 3
        if kind == "numbered":
            ans = "\n".join(
                f"{k + 1}. {tip} the {prod}."
                for k, tip in enumerate(["Wrap", "Pad", "Seal", "Label", "Weigh"][:n])
            )
        elif kind == "bullets":
            ans = f"- Wipe the {prod} with a dry cloth.\n- Keep it away from heat.\n- Store it dry."
        elif kind == "json":
            ans = json.dumps({"name": prod, "price": round(9.5 + (i * 13) % 90, 2)})
        else:
            ans = f"A {prod} is a practical everyday item. It is sold in several colours."
        replay.append(
            {
                "id": f"r-{i:04d}",
                "messages": [
                    {"role": "user", "content": ask.format(n=n, p=prod)},
                    {"role": "assistant", "content": ans},
                ],
            }
        )
    (data / "replay_formatting.jsonl").write_text(
        "\n".join(json.dumps(r) for r in replay) + "\n", encoding="utf-8"
    )

    # ---- annotations: 5 annotators label the intent of 150 tickets; a2 random, a4 constant
    sample = [r for r in t24[:420:3]][:150]
    with open(data / "annotations.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["example_id", "annotator", "label", "timestamp"])
        for r in sample:
            truth = r["intent"]
            hard = rng.random() < 0.15
            for a in ("a1", "a2", "a3", "a4", "a5"):
                if a == "a2":
                    lab = rng.choice(intents)
                elif a == "a4":
                    lab = "order_status"
                elif hard and rng.random() < 0.5:
                    lab = rng.choice([x for x in intents if x != truth])
                else:
                    lab = truth if rng.random() < 0.93 else rng.choice(intents)
                w.writerow([r["ticket_id"], a, lab, "2024-12-01T10:00:00"])


SPEC_V1 = """---
name: support-bot
version: "1"
purpose: >-
  Answer Northwind Home customers' support tickets correctly, briefly and kindly, following
  company policy.
inputs: One customer message (English), often with an order number.
outputs:
  - A reply to the customer in plain text.
areas:
  orders:
    description: Order status, tracking, delivery times and delivery address changes.
    criteria:
      - Give the current status and the expected delivery time.
      - Addresses can be changed only before the order ships.
    keywords: [order status, shipped, tracking, delivery address, shipping address]
  refunds:
    description: Returns, refunds and getting money back for an item.
    criteria:
      - Items can be returned within 30 days of delivery for a full refund.
      - Say how long the refund takes to reach the customer.
    keywords: [refund, money back, return]
  account:
    description: Logging in, passwords, locked accounts.
    criteria:
      - Never ask for the password; send the reset link instead.
    keywords: [password, log in, login, locked out]
  billing:
    description: Charges, double charges, failed payments.
    criteria:
      - Explain pre-authorisations; refund real duplicate charges.
    keywords: [charged, charge, payment]
---
# Northwind Home support: task specification

Be brief and kind; never promise what policy does not allow.
"""


def write_project(out: Path) -> None:
    """The project files around the data: ftprep.yaml, the task spec with its history (v1,
    then v2 changing the refund window), rubric, capabilities, objectives."""
    from ftprep.project import load_project
    from ftprep.spec import bump, lock

    templates = HERE.parent / "src" / "ftprep" / "templates"
    for name in ("capabilities.yaml", "objectives.yaml"):
        (out / name).write_text((templates / name).read_text(encoding="utf-8"), encoding="utf-8")
    # support replies legitimately repeat policy sentences: only explicit boilerplate counts
    rubric = (templates / "rubric.yaml").read_text(encoding="utf-8")
    shared = "params: {shared_min_share: 0.005, shared_min_words: 5, shared_max_doc_share: 0.5}"
    assert shared in rubric, "rubric template changed: update examples/make_example.py"
    rubric = rubric.replace(
        shared, "params: {shared: false}  # replies reuse policy sentences by design"
    )
    (out / "rubric.yaml").write_text(rubric, encoding="utf-8")
    (out / "ftprep.yaml").write_text(
        (HERE / "support-bot.ftprep.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    for f in ("spec.md", "spec.history.jsonl", ".ftprep/spec_anchor.json"):
        (out / f).unlink(missing_ok=True)
    (out / "spec.md").write_text(SPEC_V1, encoding="utf-8")
    project = load_project(out)
    lock(project, effective="2024-01-01", note="initial policy", actor="policy-team")
    (out / "spec.md").write_text(
        SPEC_V1.replace('version: "1"', 'version: "2"').replace(
            "Items can be returned within 30 days", "Items can be returned within 14 days"
        ),
        encoding="utf-8",
    )
    bump(
        load_project(out),
        effective="2025-01-01",
        note="refund window shortened to 14 days",
        actor="policy-team",
    )


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "support-bot"
    make(target)
    write_project(target)
