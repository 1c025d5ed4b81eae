"""Seed prompts and tool-call conversations added in version 2 of the default lens corpus.

Imported by ``scripts/make_lens_corpus.py``; everything here is deterministic (fixed lists and a seeded RNG).
"""

from __future__ import annotations

import json
import random

CHAT_FORMS = [
    "What is {}?",
    "Can you explain {} to a beginner?",
    "Why does {} matter?",
    "Give me three facts about {}.",
    "How would you summarise {} in two sentences?",
    "What are common mistakes people make about {}?",
    "Compare {} with something similar and explain the difference.",
    "I have an exam tomorrow on {}. What should I remember?",
]
CHAT_TOPICS = [
    "the capital of Australia",
    "the water cycle",
    "inflation",
    "DNA",
    "the speed of light",
    "compound interest",
    "the Great Wall of China",
    "machine learning",
    "a healthy breakfast",
    "the Pythagorean theorem",
    "the Moon's phases",
    "renewable energy",
    "the immune system",
    "the Renaissance",
    "supply and demand",
    "plate tectonics",
    "the Python programming language",
    "time zones",
    "the Olympic Games",
    "coffee",
    "sleep",
    "the Amazon rainforest",
    "electric circuits",
    "the periodic table",
    "World War I",
    "democracy",
    "a job interview",
    "the Eiffel Tower",
    "antibiotics",
    "the Milky Way",
    "recycling",
    "the piano",
    "tides",
    "carbon dioxide",
    "the Nile river",
    "credit cards",
    "jazz music",
    "gravity",
    "the human brain",
    "the metric system",
    "Shakespeare",
    "rainbows",
    "open-source software",
    "the Silk Road",
    "bicycles",
    "photosynthesis in algae",
    "the ozone layer",
    "password security",
    "the French language",
    "mountain climbing",
]
SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in a few sentences.",
    "You are a friendly tutor who explains things step by step.",
    "You are an expert assistant. Be precise and factual.",
]
CODE_PROMPTS = [
    "Write a Python function that merges two sorted lists into one sorted list.",
    "Write a Python dataclass for a book with a title, an author and a year, and a function that sorts books by year.",
    "Write pytest tests for a function that adds two numbers.",
    "Write a Python function with a docstring that parses a date string like 2024-05-17.",
    "Write a JavaScript function that fetches JSON from a URL and logs one field.",
    "Write a TypeScript interface for a user with a name, an email and an optional age.",
    "Write a SQL query that counts orders per month in a table called orders.",
    "Write a SQL statement that creates a table of products with a price and a stock count.",
    "Write a bash script that prints the ten largest files in a directory.",
    "Write a Rust function that returns the largest number in a vector.",
    "Write a Go function that reverses a slice of integers.",
    "Write a C function that computes the length of a string.",
    "Write a YAML configuration for a web server with a port, a host and a log level.",
    "Write a JSON object describing a person with a name, an age and a list of hobbies.",
    "Write a Python function that reads a JSON file and returns the keys of the top-level object.",
    "Write a Python generator that yields the lines of a file that contain a word.",
    "Write a Python function that validates an email address with a regular expression.",
    "Write a Python class for a stack with push, pop and peek.",
    "Write a Python function that counts how often each character appears in a string.",
    "Write a Python script that renames every .txt file in a folder to .md.",
    "Write HTML for a simple page with a title, a heading and a list of three items.",
    "Write CSS that centres a box on the page and gives it a shadow.",
    "Write a Python function that computes the average of a list and handles an empty list.",
    "Write a Dockerfile for a small Python web application.",
    "Write a Python function that converts Celsius to Fahrenheit, with type hints and tests.",
    "Write a Python function that flattens a nested list.",
    "Write a JavaScript class for a counter with increment and reset methods.",
    "Write a Python function that downloads nothing but prints the numbers 1 to 100 as FizzBuzz.",
    "Write a regular expression that matches a phone number and explain each part.",
    "Write a Python function that finds duplicate items in a list.",
    "Write a Python function that checks whether a string is a palindrome, ignoring spaces.",
    "Write a git command sequence to create a branch, commit a change and push it.",
    "Write a Makefile with targets to install, test and clean a Python project.",
    "Write a Python function that splits a list into chunks of a given size.",
    "Write a Python function that returns the n most common words in a text.",
    "Explain what this Python code does: [x * x for x in range(10) if x % 2 == 0]",
    "Write a SQL query that joins customers and orders and lists customers without orders.",
    "Write a Python function that computes a moving average over a list of numbers.",
    "Write a Python function that pretty-prints a dictionary as a table.",
    "Write a Python async function that waits one second and returns a greeting.",
]
PROSE_FORMS = [
    "Write a short essay about {}.",
    "Write an email to a colleague about {}.",
    "Write a product review of {}.",
    "Write a summary of a news article about {}.",
    "Write a short product description for {}.",
    "Write a diary entry about {}.",
    "Write a speech for a school assembly about {}.",
    "Write a travel blog post about {}.",
]
PROSE_TOPICS = [
    "a new pair of running shoes",
    "a rainy weekend",
    "a community garden",
    "a power cut in the city",
    "a new smartphone",
    "a museum visit",
    "a team project deadline",
    "a local football match",
    "a winter holiday",
    "a new café opening downtown",
    "learning a second language",
    "a science fair",
    "a flood in a small town",
    "working from home",
    "a birthday party",
    "a hiking trail in the mountains",
    "a concert in the park",
    "an old family recipe",
    "a moving day",
    "a new library building",
    "a solar-powered lamp",
    "a camping trip",
    "a bus strike",
    "a chess tournament",
    "an electric scooter",
    "a school play",
    "a farmers' market",
    "a noisy neighbour",
    "a first day at a new job",
    "a lost wallet that was returned",
]

TOOLS = {
    "get_weather": ({"city": "string", "unit": "celsius|fahrenheit"}, "Current weather for a city"),
    "search_web": ({"query": "string", "max_results": "integer"}, "Search the web"),
    "create_event": ({"title": "string", "date": "YYYY-MM-DD", "time": "HH:MM"}, "Add an event to the calendar"),
    "calculate": ({"expression": "string"}, "Evaluate an arithmetic expression"),
    "convert_units": ({"value": "number", "from": "string", "to": "string"}, "Convert a quantity between units"),
    "query_database": ({"sql": "string"}, "Run a read-only SQL query"),
    "send_email": ({"to": "string", "subject": "string", "body": "string"}, "Send an email"),
    "get_stock_price": ({"symbol": "string"}, "Latest price of a stock"),
}
CITIES = [
    "Paris",
    "Tokyo",
    "Lagos",
    "Lima",
    "Oslo",
    "Cairo",
    "Sydney",
    "Toronto",
    "Mumbai",
    "Berlin",
    "Seoul",
    "Austin",
]
NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jade", "Kofi", "Lena"]


def _schema(name: str) -> dict:
    params, desc = TOOLS[name]
    return {"name": name, "description": desc, "parameters": params}


def _case(rng: random.Random) -> tuple[str, str, dict, dict, str]:
    """(tool, user request, arguments, result, final answer)."""
    kind = rng.choice(sorted(TOOLS))
    city, name = rng.choice(CITIES), rng.choice(NAMES)
    if kind == "get_weather":
        t, unit = rng.randint(-5, 35), rng.choice(["celsius", "fahrenheit"])
        t = t if unit == "celsius" else round(t * 9 / 5 + 32)
        cond = rng.choice(["sunny", "cloudy", "light rain", "snow", "windy"])
        return (
            kind,
            f"What's the weather like in {city} right now?",
            {"city": city, "unit": unit},
            {"temperature": t, "unit": unit, "conditions": cond},
            f"It is {t} degrees {unit} and {cond} in {city}.",
        )
    if kind == "search_web":
        q = rng.choice(["best hiking trails near " + city, "population of " + city, "museums in " + city])
        return (
            kind,
            f"Can you look up the {q}?",
            {"query": q, "max_results": 3},
            {"results": [{"title": f"{q.title()} - Guide", "url": f"https://example.org/{rng.randint(1, 999)}"}]},
            f'I found a guide titled "{q.title()} - Guide".',
        )
    if kind == "create_event":
        d = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        hm = f"{rng.randint(8, 18):02d}:{rng.choice(['00', '15', '30', '45'])}"
        title = f"Meeting with {name}"
        return (
            kind,
            f"Add a meeting with {name} on {d} at {hm}.",
            {"title": title, "date": d, "time": hm},
            {"status": "created", "id": rng.randint(1000, 9999)},
            f'Done: "{title}" is on your calendar for {d} at {hm}.',
        )
    if kind == "calculate":
        a, b = rng.randint(12, 999), rng.randint(2, 99)
        op = rng.choice(["*", "+", "-"])
        val = {"*": a * b, "+": a + b, "-": a - b}[op]
        return (
            kind,
            f"What is {a} {op} {b}?",
            {"expression": f"{a} {op} {b}"},
            {"result": val},
            f"{a} {op} {b} = {val}.",
        )
    if kind == "convert_units":
        v = rng.randint(1, 200)
        f, t, k = rng.choice([("km", "miles", 0.621371), ("kg", "pounds", 2.20462), ("liters", "gallons", 0.264172)])
        out = round(v * k, 2)
        return (
            kind,
            f"Convert {v} {f} to {t}.",
            {"value": v, "from": f, "to": t},
            {"value": out, "unit": t},
            f"{v} {f} is about {out} {t}.",
        )
    if kind == "query_database":
        n = rng.randint(3, 400)
        sql = f"SELECT COUNT(*) FROM orders WHERE city = '{city}'"
        return (
            kind,
            f"How many orders do we have from {city}?",
            {"sql": sql},
            {"rows": [[n]]},
            f"There are {n} orders from {city}.",
        )
    if kind == "send_email":
        subj = rng.choice(["Project update", "Lunch on Friday", "Invoice question"])
        to = f"{name.lower()}@example.com"
        return (
            kind,
            f"Email {name} about '{subj}' and say I'll call tomorrow.",
            {"to": to, "subject": subj, "body": "Hi " + name + ", I'll call you tomorrow."},
            {"status": "sent"},
            f'I sent the email "{subj}" to {to}.',
        )
    sym = rng.choice(["AAPL", "MSFT", "NVDA", "TSLA", "AMZN"])
    price = round(rng.uniform(50, 900), 2)
    return (
        kind,
        f"What's the latest price of {sym}?",
        {"symbol": sym},
        {"symbol": sym, "price": price},
        f"{sym} last traded at ${price}.",
    )


def tool_conversations(n: int = 120, seed: int = 20261204) -> list[list[dict[str, str]]]:
    """``n`` tool-call conversations: tools offered in the system turn, a JSON call, the result, an answer."""
    rng = random.Random(seed)
    out = []
    seen: set[str] = set()
    while len(out) < n:
        tool, request, args, result, answer = _case(rng)
        if request in seen:  # every request once: no conversation repeats within or across the splits
            continue
        seen.add(request)
        offered = sorted({tool, *rng.sample(sorted(TOOLS), rng.randint(0, 2))})
        system = (
            'You can call these tools. Reply with a JSON object {"tool": ..., "arguments": ...} to call one.\n'
            + json.dumps([_schema(t) for t in offered], indent=1)
        )
        out.append(
            [
                {"role": "system", "content": system},
                {"role": "user", "content": request},
                {"role": "assistant", "content": json.dumps({"tool": tool, "arguments": args})},
                {"role": "user", "content": "Tool result: " + json.dumps(result)},
                {"role": "assistant", "content": answer},
            ]
        )
    return out


def chat_prompts() -> list[tuple[str | None, str]]:
    """(system message or None, question) pairs: every topic meets four forms, rotating."""
    out = []
    for i, topic in enumerate(CHAT_TOPICS):
        for k in range(4):
            system = SYSTEMS[(i + k) % len(SYSTEMS)] if (i + k) % 3 == 0 else None
            out.append((system, CHAT_FORMS[(i + 2 * k) % len(CHAT_FORMS)].format(topic)))
    return out


def prose_prompts() -> list[str]:
    return [PROSE_FORMS[(i + 3 * k) % len(PROSE_FORMS)].format(t) for i, t in enumerate(PROSE_TOPICS) for k in range(3)]
