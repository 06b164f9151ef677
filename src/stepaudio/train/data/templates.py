"""Generated sentences: templates over numbers, dates, times, money and names.

Dialogues and fortunes rarely say "March 3rd at 7:45" or a phone number; these templates make sure
the corpus covers digits, dates and common words. English keeps digits in the text (every English
engine reads them); Chinese spells numbers in characters, so Mandarin pinyin and Cantonese agree.
The pool is drawn with a fixed seed: it never depends on the corpus seed, so the held-out test
sentences do not either.
"""

from __future__ import annotations

import random

from stepaudio.train.data.chinese import chinese_digits, chinese_number

POOL_SEED = 20240101

_EN_NAMES = (
    "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Isabel", "James", "Karen", "Liam",
    "Maria", "Noah", "Olivia", "Peter", "Quinn", "Rachel", "Samuel", "Tina", "Victor", "Wendy", "Yusuf", "Zoe",
)  # fmt: skip
_EN_THINGS = (
    "apples", "books", "tickets", "chairs", "emails", "boxes", "cups of coffee", "pages", "songs", "photos",
    "keys", "bottles of water", "shirts", "lessons", "eggs", "letters", "pencils", "trees", "birds", "cars",
)  # fmt: skip
_EN_PLACES = (
    "the station", "the library", "the airport", "the office", "the market", "the hospital", "the park",
    "the museum", "the school", "the bank", "the hotel", "the river", "the old bridge", "the main square",
)  # fmt: skip
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EN_TEMPLATES = (
    "{name} bought {n} {thing} for {money} dollars.",
    "The meeting is on {weekday}, {month} {day}, at {hour}:{minute:02d}.",
    "Please call {name} at {phone}.",
    "Flight {flight} leaves from gate {gate} at {hour}:{minute:02d}.",
    "The temperature today is {n} degrees.",
    "We walked {n} miles to {place}.",
    "{name} was born in {year}.",
    "There are {big} people living near {place}.",
    "Turn left at {place} and drive {n} kilometers.",
    "My room number is {gate}, on floor {n}.",
    "The train to {place} is {n} minutes late.",
    "{name} scored {percent} percent on the test.",
    "It costs {money} dollars and {n} cents.",
    "Meet me at {place} on {weekday} at {hour} o'clock.",
    "The answer is {big}, not {n}.",
    "{name} and {name2} have {n} {thing} between them.",
)

_ZH_NAMES = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨帆", "赵磊", "黄敏", "周杰", "吴霞", "孙明", "林红")
_ZH_THINGS = (("本", "书"), ("个", "苹果"), ("张", "票"), ("杯", "咖啡"), ("辆", "车"), ("只", "猫"), ("封", "信"))
_ZH_PLACES = ("火车站", "图书馆", "机场", "公司", "市场", "医院", "公园", "博物馆", "学校", "银行", "饭店")
_ZH_WEEKDAYS = "一二三四五六日"
_ZH_TEMPLATES = (
    "今天是{month}月{day}日，星期{weekday}。",
    "{name}买了{n}{unit}{thing}。",
    "现在是{hour}点{minute}分。",
    "我的电话号码是{phone}。",
    "这{unit}{thing}要{money}块钱。",
    "{name}今年{age}岁了。",
    "今天的气温是{n}度。",
    "我们走了{n}公里才到{place}。",
    "{name}是{year}年出生的。",
    "{place}附近住着{big}个人。",
    "去{place}的火车晚了{n}分钟。",
    "请在星期{weekday}{hour}点到{place}来。",
)


def _english(rng: random.Random) -> str:
    name, name2 = rng.sample(_EN_NAMES, 2)
    return rng.choice(_EN_TEMPLATES).format(
        name=name,
        name2=name2,
        n=rng.randint(2, 99),
        thing=rng.choice(_EN_THINGS),
        money=rng.randint(1, 999),
        weekday=rng.choice(_WEEKDAYS),
        month=rng.choice(_MONTHS),
        day=rng.randint(1, 28),
        hour=rng.randint(1, 12),
        minute=rng.randrange(0, 60, 5),
        phone=" ".join(str(rng.randint(0, 9)) for _ in range(7)),
        flight=f"{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')} {rng.randint(10, 999)}",
        gate=rng.randint(1, 60),
        place=rng.choice(_EN_PLACES),
        year=rng.randint(1900, 2030),
        big=rng.randint(100, 99_999),
        percent=rng.randint(1, 100),
    )


def _chinese(rng: random.Random) -> str:
    unit, thing = rng.choice(_ZH_THINGS)
    return rng.choice(_ZH_TEMPLATES).format(
        name=rng.choice(_ZH_NAMES),
        n=chinese_number(rng.randint(2, 99)),
        unit=unit,
        thing=thing,
        money=chinese_number(rng.randint(1, 999)),
        month=chinese_number(rng.randint(1, 12)),
        day=chinese_number(rng.randint(1, 28)),
        weekday=rng.choice(_ZH_WEEKDAYS),
        hour=chinese_number(rng.randint(1, 12)),
        minute=chinese_number(rng.randrange(5, 60, 5)),
        phone=chinese_digits("".join(str(rng.randint(0, 9)) for _ in range(8))),
        age=chinese_number(rng.randint(3, 90)),
        place=rng.choice(_ZH_PLACES),
        year=chinese_digits(str(rng.randint(1950, 2030))),
        big=chinese_number(rng.randint(100, 99_999)),
    )


def generated_sentences(language: str, count: int = 2000) -> list[str]:
    """`count` distinct template sentences (fewer if the templates run out) for "en", "zh" or "yue"."""
    make = _english if language == "en" else _chinese
    rng = random.Random(f"{POOL_SEED}-{language}")
    sentences: dict[str, None] = {}
    for _ in range(count * 5):
        sentences[make(rng)] = None
        if len(sentences) == count:
            break
    return list(sentences)
